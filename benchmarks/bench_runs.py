"""Runs that print for weeks: replaying a long run's log, against the floor of the same work.

    python -m benchmarks runs [--quick] [--rounds R]

A real run on the built-in home site prints 1,000,000 lines (`print(..., flush=True)`: a record
each; 100,000 with --quick) and another 10,000. Each measure runs the real CLI in its own
process, R rounds, and reports the median and the spread (lowest to highest) of the ratio:
- `jupyter-split logs RUN` and `attach RUN` (to /dev/null): peak RSS against the same command on
  the 10,000-line run (goal <= 1.5x), and time against the floor, a Python loop that decodes the
  log's records and writes their text (goal <= 1.2x);
- `logs RUN --tail 100` against the full `logs RUN` (goal <= 0.05x), as commands (each pays the
  interpreter's start and the imports, about half a second) and through the Python API in one
  process (`Split.run_tail_lines` against a whole replay, `Split.iter_run_events`);
- the same log on an SSH site (the test sshd on 127.0.0.1; the run's directory is copied there):
  `logs RUN` against `ssh host cat events.jsonl` piped through the floor's decoder, as a rate
  (goal >= 0.8x).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import scratch_data_dir
from jupyter_split.runs.segments import segment_name

FLOOR = r"""
import json, sys
out = sys.stdout
for source in [open(path, "rb") for path in sys.argv[1:]] or [sys.stdin.buffer]:  # each segment, in order
    for line in source:
        event = json.loads(line)
        if event["type"] == "stream":
            out.write(event["text"])
"""


def log_segments(run_dir: Path) -> list[Path]:
    """A run's event log files in order: events.jsonl, then events.000001.jsonl, ... (a long log rolls)."""
    found, segment = [], 0
    while (path := run_dir / segment_name(segment)).exists():
        found.append(path)
        segment += 1
    return found


#: GNU time reports a child's own peak RSS; a child's ru_maxrss as this process reads it would
#: start from this process's own peak (Linux keeps it across fork and exec)
GNU_TIME = shutil.which("time") if os.path.exists("/usr/bin/time") else None


def timed(argv: list[str], cwd: Path, env: dict[str, str], stdin: int | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one process, its output thrown away."""
    if GNU_TIME is None:
        raise RuntimeError("this benchmark needs GNU time (apt-get install time) to read a process's peak RSS")
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], cwd=cwd, env=env, stdin=stdin,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:5]} failed: {done.stderr.decode()[-2000:]}")
    return elapsed, int(done.stderr.decode().strip().splitlines()[-1])


def piped(first: list[str], second: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of `first | second`."""
    started = time.perf_counter()
    head = subprocess.Popen(first, cwd=cwd, env=env, stdout=subprocess.PIPE)
    done = subprocess.run(second, cwd=cwd, env=env, stdin=head.stdout, stdout=subprocess.DEVNULL, check=True)
    head.stdout.close()
    if head.wait() != 0 or done.returncode != 0:
        raise RuntimeError(f"{first[:3]} | {second[:3]} failed")
    return time.perf_counter() - started


def make_run(split, lines: int) -> tuple[str, Path]:
    from jupyter_split.core.outcome import CellOptions

    cell = f"for i in range({lines}):\n    print(f'step-{{i}}-end', flush=True)"
    outcome = split.execute(cell, CellOptions(site="home", detach=True), {}, lambda event: None)
    while (state := next(r.state for r in split.list_runs() if r.run_id == outcome.run_id)) not in ("succeeded", "failed"):
        time.sleep(1)
    assert state == "succeeded", state
    return outcome.run_id, Path(split.index.get(outcome.run_id).run_dir)


def spread(ours: list[float], peer: list[float]) -> str:
    ratios = sorted(o / p for o, p in zip(ours, peer))
    return f"{statistics.median(ratios):.2f}x [{ratios[0]:.2f} to {ratios[-1]:.2f}]"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from jupyter_split.config import load_config
    from jupyter_split.core.split import Split
    from jupyter_split.runs.index import RunRecord
    from tests.services.sshd import start_sshd

    quick = "--quick" in argv
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 3
    long_lines = 100_000 if quick else 1_000_000
    with scratch_data_dir() as data:
        root = Path(data)
        server = start_sshd(root / "sshd")
        work = root / "work"
        work.mkdir()
        site = server.site()
        (work / "jupyter_split.toml").write_text(
            '[experiment]\nname = "bench"\nhome = "home"\ndefault_remote = "sg"\n[sites.home]\njurisdiction = "CN"\n'
            "[sites.sg]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in site.items()))
        env = {**os.environ, "JUPYTER_SPLIT_DATA": data, "JUPYTER_SPLIT_CONFIG": str(work / "jupyter_split.toml")}
        os.environ["JUPYTER_SPLIT_CONFIG"] = env["JUPYTER_SPLIT_CONFIG"]
        try:
            split = Split(load_config())
            started = time.perf_counter()
            long_id, long_dir = make_run(split, long_lines)
            short_id, _ = make_run(split, 10_000)
            segments = log_segments(long_dir)
            print(f"the runs: {time.perf_counter() - started:.0f} s; the long log "
                  f"{sum(path.stat().st_size for path in segments) / 1e6:.0f} MB in {len(segments)} segments",
                  file=sys.stderr)
            # the same log on the SSH site: its directory copied there, and a row for it in the index
            remote_dir = Path(server.workdir) / "runs" / (long_id + "-sg")
            shutil.copytree(long_dir, remote_dir)
            split.index.add(RunRecord(run_id=long_id + "-sg", site="sg", run_dir=str(remote_dir), mode="detached",
                                      state="succeeded"))
            cli = [sys.executable, "-m", "jupyter_split.cli"]
            floor = [sys.executable, "-c", FLOOR]
            ssh = ["ssh", "-p", str(server.port), "-i", server.identity_file, "-o", f"UserKnownHostsFile={server.known_hosts}",
                   "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"{server.user}@{server.host}",
                   "cat", *(str(remote_dir / path.name) for path in segments)]
            got: dict[str, list[tuple[float, int]]] = {}
            for _ in range(rounds):
                for name, args in [("logs", [*cli, "logs", long_id]), ("logs short", [*cli, "logs", short_id]),
                                   ("attach", [*cli, "attach", long_id]), ("attach short", [*cli, "attach", short_id]),
                                   ("tail", [*cli, "logs", long_id, "--tail", "100"]),
                                   ("floor", [*floor, *map(str, segments)]),
                                   ("logs ssh", [*cli, "logs", long_id + "-sg"])]:
                    got.setdefault(name, []).append(timed(args, work, env))
                got.setdefault("ssh cat", []).append((piped(ssh, floor, work, env), 0))
                started = time.perf_counter()
                split.run_tail_lines(long_id, 100)
                got.setdefault("api tail", []).append((time.perf_counter() - started, 0))
                started = time.perf_counter()
                for _ in split.iter_run_events(long_id):
                    pass
                got.setdefault("api replay", []).append((time.perf_counter() - started, 0))
            t = {k: [x[0] for x in v] for k, v in got.items()}
            rss = {k: [float(x[1]) for x in v] for k, v in got.items()}
            n = f"{long_lines:,}"
            rows = [
                (f"`logs` of {n} lines: peak RSS vs 10,000 lines", rss["logs"], rss["logs short"], "<= 1.5x"),
                (f"`attach` of {n} lines: peak RSS vs 10,000 lines", rss["attach"], rss["attach short"], "<= 1.5x"),
                (f"`logs` of {n} lines: time vs the decode-and-write floor", t["logs"], t["floor"], "<= 1.2x"),
                (f"`attach` of {n} lines: time vs the decode-and-write floor", t["attach"], t["floor"], "<= 1.2x"),
                (f"`logs --tail 100` vs the full `logs` of {n} lines (commands)", t["tail"], t["logs"], "<= 0.05x"),
                (f"`Split.run_tail_lines(100)` vs a whole replay of {n} lines (API, one process)", t["api tail"],
                 t["api replay"], "<= 0.05x"),
                ("`logs` over SSH: time vs `ssh cat` into the floor (rate = 1/ratio)", t["logs ssh"], t["ssh cat"],
                 "<= 1.25x (rate >= 0.8x)"),
            ]
            print("| measure | jupyter_split (median) | peer (median) | ratio [spread] | goal |")
            print("|---|---|---|---|---|")
            for what, ours, peer, goal in rows:
                unit = " MiB" if "RSS" in what else " s"
                scale = 1024 if "RSS" in what else 1
                print(f"| {what} | {statistics.median(ours) / scale:.3g}{unit} | {statistics.median(peer) / scale:.3g}{unit} "
                      f"| {spread(ours, peer)} | {goal} |")
        finally:
            server.stop()
    return 0
