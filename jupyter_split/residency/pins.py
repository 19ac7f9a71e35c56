"""The files of a copy as the residency guard sees them, and a local file pinned as judged.

`SourceFile` and `Source` are what the guard is given (`border.judge`); a local file's
identity is pinned (`Pin`) when it is judged, and the copy reads it only through
`PinnedReader`, which refuses a file swapped for another or written to since.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Mapping

from .. import verified
from ..errors import SplitError
from .locations import host_of, is_this_machine, scheme_of

if TYPE_CHECKING:
    from .kept import SpoolFolder


class PinError(SplitError, OSError):
    """A file changed identity or content between the guard's check and the copy's read."""


@dataclass(frozen=True)
class Pin:
    """A local file's identity as the guard judged it."""

    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    seen_ns: int = field(default=0, compare=False)  # time.time_ns() before the stat (0: not known)

    @classmethod
    def of(cls, path: str, st: os.stat_result, seen_ns: int = 0) -> "Pin":
        """The pin of the file at `path` as `st` (its stat, taken after `seen_ns`) shows it now."""
        return cls(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, seen_ns)

    def remember(self, sha256: str) -> None:
        """Record `sha256`, of every byte of the file read under this pin, in this machine's hash
        records (`verified`, the same racy-window rule): the next copy from here, a re-sync, does not
        read the file again to hash it."""
        if self.seen_ns:
            version = SimpleNamespace(st_dev=self.dev, st_ino=self.ino, st_size=self.size,
                                      st_mtime_ns=self.mtime_ns, st_ctime_ns=self.ctime_ns)
            verified.remember(version, self.seen_ns, sha256)  # type: ignore[arg-type]  (the five it reads)

    def check(self, st: os.stat_result) -> None:
        """Raise PinError unless `st` (of the open file) is the file as judged, unchanged."""
        now = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if now != (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns):
            raise PinError(
                f"{self.path} changed after the residency guard checked it (another file is there now, or it was "
                "written to): nothing of it was sent. Run the copy again once nothing writes the source."
            )


class PinnedReader:
    """A local file read only while `fstat` shows the file the guard judged, unchanged."""

    def __init__(self, path: str, pin: Pin):
        self._file = open(path, "rb")
        self._pin = pin
        try:
            pin.check(os.fstat(self._file.fileno()))
        except BaseException:
            self._file.close()
            raise

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left for -1); PinError if the file is no longer the one judged."""
        data = self._file.read(size)
        self._pin.check(os.fstat(self._file.fileno()))  # the bytes just read are the judged ones
        return data

    def seekable(self) -> bool:
        """Always True: the file is a plain local file."""
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move to `offset`; the next read is still checked against the pin."""
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        """The current offset in the file."""
        return self._file.tell()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> "PinnedReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class SourceFile:
    """One file a copy would send: its name in the copy, its path in the source filesystem, its size."""

    rel: str
    path: str
    size: int
    pin: Pin | None = None
    data: bytes | None = None  # a small file's bytes as the scan read them, for the copy to send
    spool: str | None = None  # a bigger remote file's bytes as the scan read them, in a file here (`kept`)
    etag: str | None = None  # an S3 object's version as the scan read it: the send reads only that one (`kept`)
    linked: bool | None = None  # its path passes through a symlink (None: not known, so it may)
    # its bytes cross in this copy; a file the destination holds already (a re-sync skips it) is
    # judged by its labels and its fingerprint, and not scanned again: nothing of it goes now
    sent: bool = True


@dataclass
class Source:
    """The side a copy reads: how the guard opens and hashes its files."""

    url: str
    local: bool                                  # its paths are this machine's paths
    open: Callable[[str], BinaryIO]              # a sequential reader of a file
    sha256: Callable[[list[str]], Mapping[str, str | None]]  # hashes of stored files, batched
    root: str = ""                               # its path in its filesystem (for a local source, this machine's)
    spool: SpoolFolder | None = None             # a folder here the scan may keep remote files' bytes in (`kept`)

    @property
    def here(self) -> bool:
        """Whether the files are on this machine: a local source, or an SFTP server on this machine."""
        if self.local:
            return True
        scheme, rest = scheme_of(self.url)
        return scheme == "sftp" and is_this_machine(host_of(rest.partition("/")[0]))


def read_pinned(item: SourceFile) -> bytes:
    """A small local file's bytes, read whole under its pin."""
    assert item.pin is not None
    with PinnedReader(item.path, item.pin) as reader:
        data = reader.read(item.pin.size + 1)
    if len(data) != item.pin.size:
        raise PinError(f"{item.path} changed size while it was read: nothing of it was sent")
    return data


def open_pinned(item: SourceFile, source: Source) -> Any:
    """The file as the guard judged it: a local one is read under its pin."""
    return source.open(item.path) if item.pin is None else PinnedReader(item.path, item.pin)
