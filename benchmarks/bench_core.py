"""Core: cell round trip, session start, variable transfer and kernel memory, against their peers.

    python -m benchmarks core [--quick]
Peers: ipyparallel `%%px` on one local engine; `python -c "import torch"`; a pipe to a
child process carrying the same bytes; the notebook process's own memory before and after.
"""
from __future__ import annotations

import gc
import subprocess
import sys

import psutil

from benchmarks.common import best_of, report, scratch_data_dir
from jupyter_split.core.outcome import CellOptions
from jupyter_split.core.split import Split

MB = 1 << 20


def _quiet(event: dict) -> None:
    if event["type"] == "error":
        raise RuntimeError("\n".join(event["traceback"]))


def round_trip(split: Split) -> tuple[float, float]:
    ns: dict = {}
    split.execute("pass", CellOptions(site="home"), ns, _quiet)  # warm the session
    ours = best_of(lambda: split.execute("pass", CellOptions(site="home"), ns, _quiet), repeat=30)
    import ipyparallel as ipp

    cluster = ipp.Cluster(n=1, log_level=40)
    client = cluster.start_and_connect_sync()
    try:
        view = client[:]
        view.block = True
        peer = best_of(lambda: view.execute("pass", block=True), repeat=30)
    finally:
        client.close()
        cluster.stop_cluster_sync()
    return ours, peer


def session_start(split: Split) -> tuple[float, float]:
    def new_session() -> None:
        handle = split.index.session("home")
        if handle:
            import os
            import signal as sig
            try:
                os.killpg(handle["pid"], sig.SIGKILL)
            except ProcessLookupError:
                pass
            split.index.set_session("home", None)
        split.execute("pass", CellOptions(site="home"), {}, _quiet)

    ours = best_of(new_session, repeat=3)
    peer = best_of(lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True), repeat=3)
    return ours, peer


def tensor_transfer(split: Split, size_mb: int) -> tuple[float, float]:
    import torch

    ns = {"t": torch.ones(size_mb * MB // 4, dtype=torch.float32)}
    opts = CellOptions(site="home", inputs=["t"], outputs=["t"])
    ours = best_of(lambda: split.execute("pass", opts, ns, _quiet), repeat=3)
    payload = ns["t"].numpy().tobytes()
    echo = "import sys, shutil; shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer, 1 << 20)"

    def pipe() -> None:
        done = subprocess.run([sys.executable, "-c", echo], input=payload, capture_output=True, check=True)
        assert len(done.stdout) == len(payload)

    peer = best_of(pipe, repeat=3)
    moved = 2 * size_mb  # in and out
    return moved / ours, moved / peer


def kernel_memory(split: Split, cells: int) -> tuple[float, float]:
    ns: dict = {}
    for _ in range(20):
        split.execute("x = 1", CellOptions(site="home"), ns, _quiet)
    gc.collect()
    before = psutil.Process().memory_info().rss
    for i in range(cells):
        split.execute(f"print({i})", CellOptions(site="home"), ns, lambda e: None)
    gc.collect()
    after = psutil.Process().memory_info().rss
    return (after - before) / MB, before / MB


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    with scratch_data_dir():
        split = Split()
        rt, rt_peer = round_trip(split)
        start, start_peer = session_start(split)
        size = 64 if quick else 256
        ours_tp, pipe_tp = tensor_transfer(split, size)
        growth, base = kernel_memory(split, 100 if quick else 500)
        handle = split.index.session("home")
        if handle:
            import os
            import signal as sig
            os.killpg(handle["pid"], sig.SIGTERM)
    print(report([
        ("trivial cell, warm local session vs ipyparallel %%px, seconds", rt, rt_peer, "<= 2x"),
        ("first cell of a new session vs python -c 'import torch', seconds", start, start_peer, "<= 1.3x"),
        (f"{size} MB tensor in and out vs a pipe, MB/s", ours_tp, pipe_tp, ">= 0.7x"),
    ]))
    print(f"\n{100 if quick else 500} cells in one session: notebook process RSS grew {growth:.1f} MB (from {base:.0f} MB)")
    return 0
