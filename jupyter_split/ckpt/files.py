"""Reading one file of a checkpoint whole, with its sha256: mapped on this machine, streamed from elsewhere."""
from __future__ import annotations

import hashlib
import mmap
import os
import time
from typing import Any

import torch

from .. import verified
from ..sync.fsutil import read_hashed
from ..sync.manifest import is_object_store

_READ_CHUNK = 16 << 20
_HUGE = getattr(mmap, "MADV_HUGEPAGE", None)  # Linux only


def map_local(path: str, size: int, recorded: str | None) -> tuple[torch.Tensor | None, str]:
    """A local file mapped copy-on-write and hashed in place: no copy, and pages stay evictable.

    When this machine's record for the unchanged file holds the sha256 `recorded`, the
    file is not read here at all (its pages come in as the tensors are used). Tensors
    viewing it never write back to the file (private mapping); the file's inode stays
    alive while they do, so a later re-save or sync (new files) is safe.
    """
    with open(path, "rb") as handle:
        stat_ns = time.time_ns()
        st = os.fstat(handle.fileno())
        if st.st_size != size:
            return None, ""
        if size == 0:
            return torch.empty(0, dtype=torch.uint8), hashlib.sha256().hexdigest()
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    if _HUGE is not None:
        # what this mapping reads in comes in 2 MiB folios, each mapped by one fault and one TLB
        # entry, for this load and every later one of the file (plain reads' readahead starts
        # a file in small ones); a kernel without transparent huge pages refuses: pages stay small
        try:
            mapped.madvise(_HUGE)
        except OSError:
            pass
    if recorded is not None and verified.known_sha256(st) == recorded:
        return torch.frombuffer(mapped, dtype=torch.uint8), recorded
    mapped.madvise(mmap.MADV_SEQUENTIAL)
    digest = hashlib.sha256(mapped).hexdigest()
    mapped.madvise(mmap.MADV_NORMAL)
    verified.remember(st, stat_ns, digest)
    return torch.frombuffer(mapped, dtype=torch.uint8), digest


def read_remote(fs: Any, path: str, size: int) -> tuple[torch.Tensor | None, str]:
    """A remote file read into memory in chunks, hashed as it arrives."""
    buffer = torch.empty(size, dtype=torch.uint8)  # not zero-filled: every byte is read into it
    view = memoryview(buffer.numpy())
    # object stores: one ranged GET per chunk, no read-ahead cache, so every byte is fetched once
    options = {"block_size": _READ_CHUNK, "cache_type": "none"} if is_object_store(fs) else {}
    with fs.open(path, "rb", **options) as handle:
        got, digest = read_hashed(handle, _READ_CHUNK, into=view)
        trailing = handle.read(1)
    return (buffer if got == size and not trailing else None), digest
