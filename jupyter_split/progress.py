"""The one byte progress bar: a widget in a notebook, a text bar in a terminal, nothing for a
script nobody watches. Used by sync (push, pull) and by the live channel (`--in`, `--out`).

A `Watch` sees the bars made in its thread while it is `watching` (the sidebar's transfers): the
bytes to send, the bytes sent and their rate, and it can cancel the copy, which stops at its
next bytes sent."""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any, Iterator

#: the `Watch` of the copy this thread runs (`watching`); bars made here report to it from any thread
_watched = threading.local()


class Cancelled(BaseException):
    """A watched copy was cancelled. Raised where its bytes are counted; a BaseException, so the
    copy's handlers of failures to retry (`except Exception`) let it through and the copy ends
    there, before it publishes anything."""


class Watch:
    """What a watcher sees of the bytes the copies made under `watching(watch)` send, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.total = 0
        self.done = 0
        self.files_total = 0
        self.files_done = 0
        self.cancelled = threading.Event()

    def add_total(self, nbytes: int, files: int = 0) -> None:
        """A bar of `nbytes` more, in `files` files, began."""
        with self._lock:
            self.total += nbytes
            self.files_total += files

    def file_done(self, count: int = 1) -> None:
        """`count` more files were sent whole (negative: to send again)."""
        with self._lock:
            self.files_done += count

    def update(self, nbytes: int) -> None:
        """`nbytes` more were sent (negative: to send again); raises Cancelled once `cancel` was asked."""
        if self.cancelled.is_set():
            raise Cancelled()
        with self._lock:
            self.done += nbytes

    def cancel(self) -> None:
        """Stop the copy at its next bytes sent."""
        self.cancelled.set()

    def view(self) -> dict[str, Any]:
        """{bytes_total, bytes_done, rate (bytes a second since it began), eta_s (None: unknown), files_total,
        files_done}."""
        with self._lock:
            total, done, files = self.total, self.done, {"files_total": self.files_total, "files_done": self.files_done}
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 and total >= done else None
        return {"bytes_total": total, "bytes_done": done, "rate": rate, "eta_s": eta, **files}


@contextlib.contextmanager
def watching(watch: Watch) -> Iterator[Watch]:
    """Within it, every bar this thread makes also reports to `watch`."""
    before = getattr(_watched, "watch", None)
    _watched.watch = watch
    try:
        yield watch
    finally:
        _watched.watch = before


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
                 leave: bool = True, files: int = 0):
        self._lock = threading.Lock()
        self._bar: Any = None
        self._watch: Watch | None = getattr(_watched, "watch", None)
        if self._watch is not None:
            self._watch.add_total(total, files)
        if total >= min_total and (enabled if enabled is not None else _interactive()):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=leave)

    def update(self, nbytes: int) -> None:
        """Add `nbytes` (negative when bytes are to be sent again); safe from any thread. Raises
        Cancelled when the copy's watcher cancelled it."""
        if self._watch is not None:
            self._watch.update(nbytes)
        if self._bar is not None:
            with self._lock:
                self._bar.update(nbytes)

    def file_done(self, count: int = 1) -> None:
        """`count` more of the bar's `files` were sent whole (negative: to send again), for its watcher."""
        if self._watch is not None:
            self._watch.file_done(count)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
