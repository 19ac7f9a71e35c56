"""Small helpers the benchmarks share: timing, a results table, a scratch data directory."""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from typing import Callable, Iterator


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of `repeat` calls, in seconds (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def scratch_data_dir() -> Iterator[str]:
    """An isolated jupyter_split data directory with a short path (unix socket names must fit)."""
    with tempfile.TemporaryDirectory(prefix="jsb-", dir="/tmp") as root:
        old = os.environ.get("JUPYTER_SPLIT_DATA")
        os.environ["JUPYTER_SPLIT_DATA"] = root
        try:
            yield root
        finally:
            if old is None:
                os.environ.pop("JUPYTER_SPLIT_DATA", None)
            else:
                os.environ["JUPYTER_SPLIT_DATA"] = old


def report(rows: list[tuple[str, float, float, str]]) -> str:
    """Markdown rows: what, ours, peer, ratio (ours/peer, with the unit in `what`)."""
    lines = ["| measure | jupyter_split | peer | ratio | goal |", "|---|---|---|---|---|"]
    for what, ours, peer, goal in rows:
        lines.append(f"| {what} | {ours:.4g} | {peer:.4g} | {ours / peer:.2f}x | {goal} |")
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """`rows` under `header` as a Markdown table."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(row) + " |" for row in rows)])
