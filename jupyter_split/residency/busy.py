"""The guard's own reads, which the read hook (`taint`) must not count: a flag per thread."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

#: `BUSY.active` is true while this thread does the tracker's or the guard's own work
BUSY = threading.local()


def busy() -> bool:
    """Whether this thread is inside `untracked()` (or the hook itself)."""
    return getattr(BUSY, "active", False)


@contextmanager
def untracked() -> Iterator[None]:
    """What runs inside (in this thread) is the tracker's or the guard's own work, not the
    process's reads: the guard listing resident folders or hashing a file taints nothing."""
    was_busy = busy()
    BUSY.active = True
    try:
        yield
    finally:
        BUSY.active = was_busy
