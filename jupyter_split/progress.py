"""The one byte progress bar: a widget in a notebook, a text bar in a terminal, nothing for a
script nobody watches. Used by sync (push, pull) and by the live channel (`--in`, `--out`)."""
from __future__ import annotations

import sys
import threading
from typing import Any


def _interactive() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return sys.stderr.isatty()
    shell = get_ipython()
    return (shell is not None and getattr(shell, "kernel", None) is not None) or sys.stderr.isatty()


class Progress:
    """Thread-safe byte counter feeding tqdm.auto; `enabled=None` shows it only when someone watches.

    Below `min_total` bytes there is no bar (a transfer too short to wait for); `leave=False`
    removes the bar when it is done."""

    def __init__(self, total: int, label: str, enabled: bool | None = None, *, min_total: int = 0,
                 leave: bool = True):
        self._lock = threading.Lock()
        self._bar: Any = None
        if total >= min_total and (enabled if enabled is not None else _interactive()):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=leave)

    def update(self, nbytes: int) -> None:
        """Add `nbytes` (negative when bytes are to be sent again); safe from any thread."""
        if self._bar is not None:
            with self._lock:
                self._bar.update(nbytes)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
