"""What the content scan read, kept for the copy to send: the bytes that cross are the bytes judged.

A small file's bytes are kept in memory (within KEEP_BYTES). A bigger file of a source elsewhere
(S3, an SFTP server) is written, as the scan reads it, to a spool file on this machine (within the
folder's budget): the copy sends it from there, so the object is downloaded once, not once for the
scan and again for the send (S3 to SFTP carried every byte twice over the S3 link), and nothing it
sends can have changed after it was judged. A local file needs neither: it is read under its pin.

A big S3 object whose scan passes over bytes it need not read (a safetensors file's weights) is
not spooled whole: the scan reads its header (and any tensors of bytes or integers) and keeps the
object's ETag, and the send reads the object then, that version only (`If-Match`): the weights
cross the S3 link once, as the send goes, and a replaced object is not sent.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Sequence

from .pins import SourceFile

SMALL_FILE = 256 << 10   # read whole by the scan (and kept for the copy, within KEEP_BYTES)
KEEP_BYTES = 128 << 20
#: the most a copy spools, and never more than half the folder's free space
SPOOL_MAX = 16 << 30


def size_of(item: SourceFile) -> int:
    """The file's size as judged: its pin's for a local file, the listing's for one elsewhere."""
    return item.pin.size if item.pin is not None else item.size


def to_keep(files: Sequence[SourceFile]) -> set[int]:
    """Which small files' bytes (by index) the scan keeps in memory for the copy to send."""
    kept, held = set(), 0
    for i, item in enumerate(files):
        size = size_of(item)
        if item.sent and size <= SMALL_FILE and held + size <= KEEP_BYTES:
            kept.add(i)
            held += size
    return kept


def to_spool(files: Sequence[SourceFile], folder: SpoolFolder | None) -> set[int]:
    """Which bigger files of a source elsewhere (by index) the scan writes to spool files in `folder`."""
    wanted = [i for i, item in enumerate(files) if item.pin is None and item.sent and item.size > SMALL_FILE]
    if folder is None or not wanted:
        return set()
    budget = min(SPOOL_MAX, folder.free())
    spooled, held = set(), 0
    for i in wanted:
        item = files[i]
        if held + item.size <= budget:
            spooled.add(i)
            held += item.size
    return spooled


class Tee:
    """A reader that writes what passes through it to `out`; not seekable, so a scan reads it front
    to back. Bytes a scan need not read (a safetensors file's weights) are passed over without
    being read where `raw` can skip (`S3Ranges`, which reads one version of the object): the spool
    then ends, and the send reads that version again (`etag`), the weights with it."""

    def __init__(self, raw: BinaryIO, out: BinaryIO):
        self.raw, self.out, self.count, self.broken = raw, out, 0, False
        self.skipped = False
        if hasattr(raw, "skip") and hasattr(raw, "etag"):
            self.skip = self._skip  # (only then: a scan asks `hasattr(reader, "skip")`)

    def read(self, size: int = -1) -> bytes:
        """Read from the file, and write what was read to the spool (while it can: a full disk
        ends the spool, not the scan)."""
        data = self.raw.read(size)
        if data:
            self.count += len(data)
            if not self.broken:
                self._spool(data)
        return data

    def _spool(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = self.out.write(view)  # unbuffered: a short write goes on from where it ended
                if not written:
                    raise OSError("the spool file took no more bytes")
                view = view[written:]
        except OSError:
            self.broken = True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def _skip(self, size: int) -> None:
        """Pass over `size` bytes without reading them: the spool is not the whole file now."""
        self.skipped = self.broken = True
        self.raw.skip(size)  # type: ignore[attr-defined]
        self.count += size

    def drain(self) -> None:
        """Read what the scan left (it may stop early) into the spool; nothing once it skipped."""
        while not self.skipped and self.read(1 << 20):
            pass


def spool_scan(item: SourceFile, handle: BinaryIO, path: str, scan: Any) -> Any:
    """`scan(reader)` over `handle` with every byte it reads written to `path`; the file's spool is
    `path` when it holds the whole file as listed. Else the copy reads the source again (only the
    version the scan read, where the scan kept its S3 ETag in `item.etag`)."""
    with open(path, "wb", buffering=0) as out:  # a failed write is seen at that write, not at close
        tee = Tee(handle, out)
        result = scan(tee)
        tee.drain()
    if tee.count == item.size and not tee.broken:
        item.spool = path
    else:
        os.unlink(path)
    return result


class SpoolFolder:
    """A folder of its own under `root` for one copy's spool files, made when the scan first needs it
    (a copy nothing is scanned for makes none) and removed by `close`. It holds a lock while it lives,
    so the folders of copies that were killed (their lock free) are removed by the next one made, and
    a live copy's never are."""

    def __init__(self, root: Path):
        self.root = root
        self._path: str | None = None
        self._lock = -1
        self._making = threading.Lock()  # the scan's threads ask for it at once

    @property
    def path(self) -> str:
        """The folder, made (and locked) on first use."""
        with self._making:
            if self._path is None:
                self.root.mkdir(parents=True, exist_ok=True)
                for old in self.root.iterdir():
                    _remove_if_free(old)
                path = tempfile.mkdtemp(dir=self.root)
                # the lock file is locked before it takes its name: a folder with no `.lock` is left
                # alone by another copy's clean-up, one whose `.lock` is free is removed
                fd, made = tempfile.mkstemp(dir=path, prefix=".making-")
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.rename(made, os.path.join(path, ".lock"))
                self._lock, self._path = fd, path
            return self._path

    def free(self) -> int:
        """Bytes the spool may take: half the free space where it would be made."""
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free // 2

    def close(self) -> None:
        """Remove the folder and what it holds (if it was made)."""
        with self._making:
            if self._path is not None:
                shutil.rmtree(self._path, ignore_errors=True)
                os.close(self._lock)
                self._path = None


def _remove_if_free(folder: Path) -> None:
    try:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return  # no lock (yet, or not a spool folder): left alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # its copy runs
    finally:
        os.close(fd)  # closing drops the lock taken
    shutil.rmtree(folder, ignore_errors=True)
