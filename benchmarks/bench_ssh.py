"""SSH sites against their floors and peers, on one real sshd on 127.0.0.1.

    python -m benchmarks ssh [--quick]
    python -m benchmarks ssh --link border [--scale 0.25] [--rounds 3] [--mb 256] [--pull-mb 2048]
- a trivial cell on a warm session vs one command round trip on the same open connection;
- a 256 MB tensor in and out (`--in t --out t2`) vs `scp` of the same bytes up and back;
- 100,000 printed lines, complete and in order, vs `ssh host cat` of the same text.
Loopback hides latency, so the first ratio counts round trips rather than milliseconds.
With `--link PROFILE` the sshd sits behind the link model's PROFILE (scaled by --scale to what
this machine carries): a trivial warm cell against the link's round trip (with `--pull-mb N`,
also while a pull of N MiB from the same host runs), and a 256 MB variable sent (`--in`) and
brought back (`--out`), each as a share of the link's cap.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import best_of, report, scratch_data_dir
from jupyter_split import aio
from jupyter_split.config import parse_config
from jupyter_split.core.outcome import CellOptions
from jupyter_split.core.split import Split

MB = 1 << 20


def _fail_on_error(event: dict) -> None:
    if event["type"] == "error":
        raise RuntimeError("\n".join(event["traceback"]))


def _ssh_args(server) -> list[str]:
    return ["-i", server.identity_file, "-o", f"UserKnownHostsFile={server.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]


def round_trip(split: Split) -> tuple[float, float]:
    ns: dict = {}
    split.execute("pass", CellOptions(site="sg"), ns, _fail_on_error)  # start the session
    ours = best_of(lambda: split.execute("pass", CellOptions(site="sg"), ns, _fail_on_error), repeat=30)
    ex = split.executor("sg")

    async def one_command() -> None:
        await ex.connection.run(["true"])  # the shared connection of the loop the cells use

    floor = best_of(lambda: aio.run(one_command()), repeat=30)
    return ours, floor


def tensor_in_out(split: Split, server, size: int) -> tuple[float, float]:
    import torch

    ns = {"t": torch.ones(size // 4, dtype=torch.float32)}

    def cell() -> None:
        out = split.execute("t2 = t", CellOptions(site="sg", inputs=["t"], outputs=["t2"]), ns, _fail_on_error)
        assert out.state == "succeeded" and ns["t2"].numel() == ns["t"].numel()
        del ns["t2"]

    ours = best_of(cell, repeat=3)
    with tempfile.TemporaryDirectory(prefix="jsb-scp-") as tmp:
        local, back = Path(tmp) / "blob", Path(tmp) / "back"
        local.write_bytes(os.urandom(size))
        remote = f"{server.user}@{server.host}:{server.workdir}/scp-blob"
        scp = ["scp", "-q", "-P", str(server.port), *_ssh_args(server)]

        def peer() -> None:
            subprocess.run([*scp, str(local), remote], check=True)
            subprocess.run([*scp, remote, str(back)], check=True)

        floor = best_of(peer, repeat=3)
        os.unlink(Path(server.workdir) / "scp-blob")
    return ours, floor


def many_lines(split: Split, server, lines: int) -> tuple[float, float, float]:
    """The ssh site, `ssh host cat` of the same text, and the same cell on the local executor."""
    cell = f"for i in range({lines}):\n    print('line', i, 'of the benchmark text, long enough to be a log line')"
    text = "".join(f"line {i} of the benchmark text, long enough to be a log line\n" for i in range(lines))

    def cell_on(site: str) -> None:
        received: list[str] = []
        split.execute(cell, CellOptions(site=site), {},
                      lambda e: received.append(e["text"]) if e["type"] == "stream" else _fail_on_error(e))
        assert "".join(received) == text, "lines lost, doubled or reordered"

    ours = best_of(lambda: cell_on("sg"), repeat=3)
    local = best_of(lambda: cell_on("home"), repeat=3)
    path = Path(server.workdir) / "lines.txt"
    path.write_text(text)
    ssh = ["ssh", "-p", str(server.port), *_ssh_args(server), f"{server.user}@{server.host}", "cat", str(path)]

    def peer() -> None:
        done = subprocess.run(ssh, check=True, capture_output=True)
        assert done.stdout.decode() == text

    floor = best_of(peer, repeat=3)
    path.unlink()
    return ours, floor, local


def _kill_sessions(split: Split, sites: tuple[str, ...]) -> None:
    """Kill the sessions the benchmark left running on `sites` (each runner's process group)."""
    for site in sites:
        handle = split.index.session(site)
        if handle:
            try:
                os.killpg(handle["pid"], 9)
            except ProcessLookupError:
                pass


def cells_during_pull(split: Split, ns: dict, server, link_port: int, known: Path, pull_mb: int, count: int,
                      folder: Path) -> list[float]:
    """Warm cells timed while a pull of `pull_mb` MiB (one file) from the same host runs over the link:
    from when the pull has been sending for 3 s (its width grown), until it ends or `count` cells ran."""
    import threading

    from jupyter_split import sync

    source, there = folder / "pull-src", folder / "pull-there"
    source.mkdir()
    with open(source / "big.bin", "wb") as f:
        for _ in range(pull_mb):
            f.write(os.urandom(MB))
    sync.copy(str(source), str(there), progress=False)  # published on the host's disk
    sftp = {"username": server.user, "client_keys": [server.identity_file], "known_hosts": str(known)}
    done = threading.Event()

    def pull() -> None:
        try:
            sync.copy(f"ssh://127.0.0.1:{link_port}{there}", str(folder / "pulled"), sftp, require_published=True,
                      progress=False)
        finally:
            done.set()
    threading.Thread(target=pull, daemon=True).start()
    time.sleep(3.0)
    cells = []
    while not done.is_set() and len(cells) < count:
        started = time.perf_counter()
        split.execute("pass", CellOptions(site="sg"), ns, _fail_on_error)
        cells.append(time.perf_counter() - started)
        time.sleep(0.2)
    ended_first = not done.is_set()
    done.wait()
    assert ended_first, "the pull ended before the cells were timed: give it more MiB"
    return cells


def linked(profile: str, scale: float, count: int, size: int, pull_mb: int = 0) -> int:
    """The rows through the link model: a warm cell against the round trip (and while a pull of `pull_mb`
    MiB runs, where given), a big --in and --out against the cap."""
    import statistics

    from tests.services.link import start_link
    from tests.services.sshd import start_sshd

    spread = lambda values, f="{:.2f}": f"{f.format(statistics.median(values))} ({f.format(min(values))} to {f.format(max(values))})"  # noqa: E731
    with scratch_data_dir() as data:
        server = start_sshd(Path(data) / "sshd")
        raw = {"experiment": {"name": "bench", "home": "home", "default_remote": "sg"},
               "sites": {"sg": server.site(), "home": {"jurisdiction": "CN"}}}
        aio.run(Split(parse_config(raw, "bench")).executor("sg").ready())  # installed straight, not timed
        link = start_link(server.port, profile=profile, scale=scale)
        known = Path(data) / "known_hosts_link"
        known.write_text(f"[127.0.0.1]:{link.port} {server.host_public_key}\n")
        raw["sites"]["sg"] = server.site(port=link.port, known_hosts=str(known))
        split = Split(parse_config(raw, "bench"))
        cap, rtt = link.profile.rate_up / 1e6, 2 * link.profile.delay
        ns = {"blob": os.urandom(size)}
        try:
            split.execute("pass", CellOptions(site="sg"), ns, _fail_on_error)  # the session, warm
            cells = []
            for _ in range(10 * count):
                started = time.perf_counter()
                split.execute("pass", CellOptions(site="sg"), ns, _fail_on_error)
                cells.append(time.perf_counter() - started)
            during = cells_during_pull(split, ns, server, link.port, known, pull_mb, 10 * count, Path(data)) \
                if pull_mb else []
            up, down = [], []
            for _ in range(count):
                started = time.perf_counter()
                split.execute("n = len(blob)", CellOptions(site="sg", inputs=["blob"], outputs=["n"]), ns, _fail_on_error)
                up.append(size / 1e6 / (time.perf_counter() - started))
                started = time.perf_counter()
                split.execute("back = blob", CellOptions(site="sg", outputs=["back"]), ns, _fail_on_error)
                down.append(size / 1e6 / (time.perf_counter() - started))
                assert ns.pop("back") == ns["blob"]
                print(f"  --in {up[-1]:.1f} MB/s, --out {down[-1]:.1f} MB/s", file=sys.stderr, flush=True)
        finally:
            aio.run(split.executor("sg").close())
            _kill_sessions(split, ("sg",))
            link.stop()
            server.stop()
    print(f"\n{profile} x {scale}: {link.profile.describe()}; {count} rounds, median (lowest to highest)\n")
    print("| measure | jupyter_split | goal |\n|---|---|---|")
    print(f"| trivial warm cell, s (the link's round trip {rtt:.3f} s) | {spread(cells, '{:.3f}')} | <= {rtt + 0.02:.3f} (1 RTT + 20 ms) |")
    if during:
        print(f"| trivial warm cell while a {pull_mb} MiB pull from the site runs, s | {spread(during, '{:.3f}')} | "
              f"<= {2 * (rtt + 0.02):.3f} (2x the warm cell's goal) |")
    print(f"| {size // MB} MiB --in, share of the cap ({cap:g} MB/s) | {spread([u / cap for u in up])} | >= 0.70 |")
    print(f"| {size // MB} MiB --out, share of the cap | {spread([d / cap for d in down])} | >= 0.70 |")
    return 0


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.services.sshd import start_sshd

    if "--link" in argv:
        import argparse

        parser = argparse.ArgumentParser(prog="python -m benchmarks ssh")
        parser.add_argument("--link", metavar="PROFILE")
        parser.add_argument("--scale", type=float, default=0.25)
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--mb", type=int, default=256, help="the variable's size, MiB")
        parser.add_argument("--pull-mb", type=int, default=0, help="also time warm cells while a pull this big runs")
        args = parser.parse_args(argv)
        return linked(args.link, args.scale, args.rounds, args.mb * MB, args.pull_mb)
    quick = "--quick" in argv
    size, lines = (32 * MB, 10_000) if quick else (256 * MB, 100_000)
    with scratch_data_dir() as data:
        server = start_sshd(Path(data) / "sshd")
        try:
            config = parse_config({"experiment": {"name": "bench", "home": "home", "default_remote": "sg"},
                                   "sites": {"sg": server.site(), "home": {"jurisdiction": "CN"}}}, "bench")
            split = Split(config)
            started = time.perf_counter()
            aio.run(split.executor("sg").ready())
            print(f"bootstrap of the site venv: {time.perf_counter() - started:.1f} s", file=sys.stderr)
            rt = round_trip(split)
            tensor = tensor_in_out(split, server, size)
            text = many_lines(split, server, lines)
            rows = [
                ("trivial cell on a warm session vs one command round trip (s)", *rt, "<= 3x"),
                (f"{size // MB} MB tensor in and out vs scp up and back (s)", *tensor, "<= 1.25x (>= 0.8x throughput)"),
                (f"{lines:,} printed lines vs ssh cat (s)", *text[:2], "<= 2x (>= 0.5x throughput)"),
                (f"{lines:,} printed lines, ssh site vs the local executor (s)", text[0], text[2], "the transport's share"),
            ]
            print(report(rows))
            aio.run(split.executor("sg").close())
        finally:
            if "split" in locals():
                _kill_sessions(split, ("sg", "home"))
            server.stop()
    return 0
