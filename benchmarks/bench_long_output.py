"""Long output: a tqdm bar redrawn at full speed in the event log, and a notebook kernel following
a cell of a million lines.

    python -m benchmarks long_output [--quick]
1. A loop of 100,000 updates on the home site with tqdm (its defaults, and redrawn at every
   update: mininterval=0, miniters=1) against the same loop with tqdm disabled: the run's time
   and the records its event log got; and, for what tqdm itself costs, the redrawn loop in this
   process writing into a StringIO.
2. A real IPython kernel runs a `%%on home` cell printing 1,000,000 lines, and then, in a fresh
   kernel, one of 10,000 lines: the kernel's peak RSS (VmHWM: it follows the run and shows it)
   for each; and the million lines with a scrollback of a million (the window hardly folds:
   about what showing every line costs). Each row is the median of a few runs, with the
   smallest and largest.
"""
from __future__ import annotations

import json
import os
import queue
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import scratch_data_dir
from jupyter_split.core.outcome import CellOptions
from jupyter_split.core.split import Split

MB = 1 << 20
UPDATES = 100_000
LOOP = "from tqdm import tqdm\nfor i in tqdm(range({n}){args}):\n    pass\n"
VARIANTS = {"tqdm, its defaults": "", "tqdm redrawn at every update": ", mininterval=0, miniters=1",
            "tqdm disabled": ", disable=True"}


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    """The median, and the smallest and largest, of `values`."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))} to {fmt.format(max(values))})"


def records(data: str, run_id: str) -> int:
    [log] = list(Path(data).rglob(f"{run_id}/events.jsonl"))
    return sum(1 for _ in log.open())


def bar_loops(split: Split, data: str, repeat: int) -> dict[str, tuple[list[float], list[int]]]:
    def fail(event: dict) -> None:
        if event["type"] == "error":
            raise RuntimeError("\n".join(event["traceback"]))

    split.execute("import tqdm", CellOptions(site="home"), {}, fail)  # the session started, tqdm imported
    out: dict[str, tuple[list[float], list[int]]] = {name: ([], []) for name in VARIANTS}
    for _ in range(repeat):
        for name, args in VARIANTS.items():  # interleaved, so load on the machine hits all alike
            start = time.perf_counter()
            outcome = split.execute(LOOP.format(n=UPDATES, args=args), CellOptions(site="home"), {}, fail)
            out[name][0].append(time.perf_counter() - start)
            out[name][1].append(records(data, outcome.run_id))
    return out


def local_redrawn_loop() -> float:
    import io

    from tqdm import tqdm

    start = time.perf_counter()
    for _ in tqdm(range(UPDATES), mininterval=0, miniters=1, file=io.StringIO()):
        pass
    return time.perf_counter() - start


def kernel_peak_rss(lines: int, data: str, scrollback: int | None = None) -> float:
    """Peak RSS (MB) of a fresh kernel that follows a `%%on home` cell printing `lines` lines."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix="jsb-home-") as home:
        if scrollback:
            Path(home, "jupyter_split.toml").write_text(
                f'[sites.home]\njurisdiction = "CN"\n[experiment]\ndefault_remote = "home"\n'
                f'[notebook]\nscrollback = {scrollback}\n')
        env = {**os.environ, "JUPYTER_SPLIT_DATA": data, "HOME": home}
        env.pop("JUPYTER_SPLIT_CONFIG", None)
        km = KernelManager(kernel_name="python3")
        km.start_kernel(cwd=home, env=env)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            run(kc, "%load_ext jupyter_split")
            shown = run(kc, f"%%on home\nfor i in range({lines}):\n    print(f'line {{i}} of the cell')")
            assert shown > 0
            pid = km.provisioner.process.pid  # type: ignore[union-attr]
            status = Path(f"/proc/{pid}/status").read_text()
            return int(status.split("VmHWM:")[1].split()[0]) / 1024
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def run(kc, code: str) -> int:
    """Execute `code`, reading every message the kernel publishes (as a frontend does) until it is
    idle; returns how many outputs it sent."""
    msg_id = kc.execute(code)
    count = 0
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=600)
        except queue.Empty:
            raise TimeoutError(code) from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        if msg["msg_type"] in ("stream", "display_data", "update_display_data", "execute_result"):
            count += 1
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return count


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    repeat = 2 if quick else 5
    with scratch_data_dir() as data:
        split = Split()
        loops = bar_loops(split, data, repeat)
        handle = split.index.session("home")
        if handle:
            import signal as sig

            os.killpg(handle["pid"], sig.SIGTERM)
        local = [local_redrawn_loop() for _ in range(repeat)]
        big, small = 1_000_000, 10_000
        peaks: dict[int, list[float]] = {big: [], small: [], 0: []}
        for _ in range(2 if quick else 3):
            for lines in (big, small):
                peaks[lines].append(kernel_peak_rss(lines, data))
            peaks[0].append(kernel_peak_rss(big, data, scrollback=big))
    base = statistics.median(loops["tqdm disabled"][0])
    print(f"A loop of {UPDATES:,} updates on the home site (median of {repeat}, smallest to largest):\n")
    print("| loop | seconds | vs tqdm disabled | event log records |\n|---|---|---|---|")
    for name, (times, counts) in loops.items():
        ratio = statistics.median(times) / base
        print(f"| {name} | {spread(times)} | {ratio:.2f}x | {spread([float(c) for c in counts], '{:.0f}')} |")
    print(f"| tqdm redrawn at every update, in this process into a StringIO | {spread(local)} | "
          f"{statistics.median(local) / base:.2f}x | |")
    ratio = statistics.median(peaks[big]) / statistics.median(peaks[small])
    print(f"\nA notebook kernel following a `%%on home` cell (peak RSS, MB, median of {len(peaks[big])}):\n")
    print("| cell | kernel peak RSS, MB | ratio | goal |\n|---|---|---|---|")
    print(f"| {big:,} lines | {spread(peaks[big], '{:.0f}')} | {ratio:.2f}x | <= 1.5x |")
    print(f"| {small:,} lines | {spread(peaks[small], '{:.0f}')} | 1.00x | |")
    print(f"| {big:,} lines, scrollback {big:,} | {spread(peaks[0], '{:.0f}')} | "
          f"{statistics.median(peaks[0]) / statistics.median(peaks[small]):.2f}x | |")
    print(json.dumps({"loops": loops, "local": local, "peaks": {str(k): v for k, v in peaks.items()}}))
    return 0
