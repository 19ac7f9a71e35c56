"""Reading files of this machine as an executor reads its site's, with nothing else loaded: the local
executor's `read_file`, and what reads the log of a run it started without the config (`core.logs`),
so `jupyter-split logs RUN --tail 100` costs the start of Python and a few reads, not the config's
models."""
from __future__ import annotations

import asyncio
import os
from typing import Protocol

#: the key the local executor puts in a run's handle: the run's files are on this machine
ON_THIS_MACHINE = "local"


class LogFiles(Protocol):
    """What reads a run's log (`core.replay`): an executor, or `LocalFiles`."""

    site_name: str

    async def read_file(self, path: str, offset: int = 0, size: int | None = None) -> bytes: ...


async def read_file(path: str, offset: int = 0, size: int | None = None) -> bytes:
    """A file's bytes from `offset` (below 0: from its end), at most `size`; FileNotFoundError if it is
    absent. They come as a writable bytearray, so --out tensors unpickled from it use its memory
    without a copy."""
    def read() -> bytes:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            start = max(0, end + offset) if offset < 0 else offset
            left = max(0, end - start)
            data = bytearray(left if size is None else min(size, left))
            f.seek(start)
            del data[f.readinto(data):]
            return data
    return await asyncio.to_thread(read)


async def file_info(path: str) -> tuple[int, float] | None:
    """A file's (size, modification time in ns), or None where it is absent."""
    try:
        found = await asyncio.to_thread(os.stat, path)
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


class LocalFiles:
    """The files of a run that site `site_name`'s local executor started on this machine."""

    def __init__(self, site_name: str):
        self.site_name = site_name

    async def read_file(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        """As `read_file` above."""
        return await read_file(path, offset, size)
