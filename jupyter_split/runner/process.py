"""A site process's lifetime: a launcher's children end with it, and its signals reach them."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def end_with_parent(parent: int | None = None) -> None:
    """Get SIGTERM when the parent process dies, however it dies (Linux; elsewhere a no-op).

    `parent`: the pid the caller knows its parent by (a launcher passes its own to its child);
    by default the parent this process has now. A parent that is PID 1 (a container's first
    process) is a parent like any other."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    expected = os.getppid() if parent is None else parent
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != expected:  # the parent died before the line above
        os._exit(1)


def signal_children(pid: int, signum: int) -> None:
    """Send `signum` to the direct children of `pid` (torchrun's ranks)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                os.kill(int(stat.parent.name), signum)
        except (OSError, ValueError, IndexError):
            continue
