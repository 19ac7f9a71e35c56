"""A site process's lifetime: a launcher's children end with it, and its signals reach them."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def end_with_parent() -> None:
    """Get SIGTERM when the parent process dies, however it dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the line above
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
