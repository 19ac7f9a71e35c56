"""The sidebar's lease poll: `accelerators.usage.leases` (GET /jupyter-split/lease) at 100, 5,000 and 50,000 runs.

    python -m benchmarks sidebar_lease [--rounds R] [--calls K] [--sizes 100,5000,50000] [--peer-rev REV]

The sidebar asks for the lease with the sites, every 20 s. Ours keeps each site's ended runs' sums between
polls and reads the index's changes alone (`accelerators/ledger.py`); the peer is `usage.py` of the code
before that (`--peer-rev`, loaded beside ours in this process), which walked every run of the index at each
poll. Both answer from the same index: ended runs over 60 days on two sites, each with its cards and start
in its handle, and four of the newest 50 still running. Two polls: with the index unchanged, and after a running run's
row changed (its last line, as a kernel following it writes it). The first poll of ours, which reads the
whole index, is left out as the warm-up. Goal: the poll at 50,000 runs at most 2x the poll at 100.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from benchmarks.common import markdown_table

#: the commit before the lease's ledger: the peer's usage.py
PEER_REV = "9b5cdb0"
CONFIG = """\
sites.home = { jurisdiction = "CN" }
sites.abroad = { jurisdiction = "SG", lease = { gpu_hours = 100000, price_per_gpu_hour = 2.5, currency = "USD" } }
experiment = { name = "bench", home = "home", default_remote = "abroad" }
"""


def peer_usage(rev: str) -> ModuleType:
    """`jupyter_split/accelerators/usage.py` as it was at `rev`, imported beside ours."""
    text = subprocess.run(["git", "show", f"{rev}:jupyter_split/accelerators/usage.py"], check=True,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent).stdout
    path = Path(tempfile.mkdtemp(prefix="jsb-lease-peer-")) / "peer_usage.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("jupyter_split.accelerators.peer_usage", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def fill(path: Path, count: int, rng: random.Random) -> list[str]:
    """`count` runs over the last 60 days on both sites, four of them (of the newest 50) still running, as
    many at any size: ids of those running."""
    from jupyter_split.runs.index import RunIndex

    RunIndex(path)
    now, rows, going = time.time(), [], []
    for i in range(count):
        created = now - (count - i) * 60 * 86400 / count
        site = ("home", "abroad")[i % 2]
        run_id = f"bench-{site}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(created))}-{rng.getrandbits(24):06x}"
        state = "running" if i in (count - 3, count - 8, count - 20, count - 50) else ("succeeded", "failed", "cancelled")[i % 3]
        going += [run_id] if state == "running" else []
        handle = json.dumps({"started": created + 5, "cards": rng.choice([1, 2, 4, 8]), "pid": None})
        ended = min(created + rng.uniform(60, 7200), now - 600)  # stamped by this machine's clock: in its past
        rows.append((run_id, site, state, f"/srv/runs/{run_id}", "detached", handle, created, ended, run_id[::-1]))
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO runs (run_id, site, state, run_dir, mode, handle, created, updated, rev_id) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return going


def rounds_of(polls: dict[str, Callable[[], Any]], rounds: int, calls: int,
              before: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Each poll's median seconds of `calls` calls, in `rounds` rounds taken in turn; `before` runs before each call."""
    medians: dict[str, list[float]] = {name: [] for name in polls}
    for _ in range(rounds):
        for name, poll in polls.items():
            times = []
            for _ in range(calls):
                before()
                start = time.perf_counter()
                poll()
                times.append(time.perf_counter() - start)
            medians[name].append(statistics.median(times))
    return medians


def ms(values: list[float]) -> str:
    """The median of round medians in ms, with their spread."""
    return f"{statistics.median(values) * 1e3:.2f} ms [{min(values) * 1e3:.2f} to {max(values) * 1e3:.2f}]"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sidebar_lease")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--sizes", default="100,5000,50000")
    parser.add_argument("--peer-rev", default=PEER_REV, help="the commit whose usage.py is the peer")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="jsb-lease-", dir="/tmp"))
    (root / "work").mkdir()
    (root / "work" / "jupyter_split.toml").write_text(CONFIG)
    os.chdir(root / "work")
    from jupyter_split import core
    from jupyter_split.accelerators import usage

    peer = peer_usage(args.peer_rev)
    load = os.getloadavg()[0]
    found: dict[int, dict[str, list[float]]] = {}
    for size in sizes:
        os.environ["JUPYTER_SPLIT_DATA"] = str(root / f"data-{size}")
        core.reset()
        split = core.get_split()
        going = fill(split.index.path, size, random.Random(size))
        assert usage.leases(split)["sites"][1]["runs_counted"] == size // 2  # ours' first poll: the warm-up
        step = iter(range(10**9))
        printed = lambda: split.index.update(going[0], last_line=f"step {next(step)}")  # noqa: E731
        polls = {"ours": lambda: usage.leases(split), "peer": lambda: peer.leases(split)}
        found[size] = {f"{k} unchanged": v for k, v in rounds_of(polls, args.rounds, args.calls).items()}
        found[size].update({f"{k} changed": v for k, v in rounds_of(polls, args.rounds, args.calls, printed).items()})
        print(size, {k: ms(v) for k, v in found[size].items()}, flush=True)
    first, last = sizes[0], sizes[-1]
    rows = []
    for poll in ("unchanged", "changed"):
        for who in ("ours", "peer"):
            rows.append([f"{who}, index {poll}", *(ms(found[s][f"{who} {poll}"]) for s in sizes),
                         f"{statistics.median(found[last][f'{who} {poll}']) / statistics.median(found[first][f'{who} {poll}']):.2f}x"])
        ratios = [[o / p for o, p in zip(found[s][f"ours {poll}"], found[s][f"peer {poll}"])] for s in sizes]
        rows.append([f"ours / peer, index {poll}", *(f"{statistics.median(r):.2g}x [{min(r):.2g} to {max(r):.2g}]"
                                                     for r in ratios), ""])
    header = ["poll (goal: at 50,000 runs at most 2x the poll at 100)", *(f"{s:,} runs" for s in sizes),
              f"{last:,} / {first:,}"]
    print(f"\nload average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; {args.rounds} rounds of "
          f"{args.calls} calls\n")
    print(markdown_table(header, rows))
    return 0
