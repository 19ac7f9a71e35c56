"""A byte progress bar that is a widget in a notebook and a text bar in a terminal."""
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
    """Thread-safe byte counter feeding tqdm.auto; `enabled=None` shows it only when someone watches."""

    def __init__(self, total: int, label: str, enabled: bool | None = None):
        self._lock = threading.Lock()
        self._bar: Any = None
        if enabled if enabled is not None else _interactive():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=True)

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
