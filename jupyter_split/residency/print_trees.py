"""The resident files' fingerprints as one tree: what makes an unchanged resident set cheap to check.

A check walks every resident file anyway (a file written a moment ago must count at once).
The walk's stat identities (each folder, glob and name; each file's device, inode, size,
mtime and ctime, in walk order) are folded into one blake2b digest, the tree's signature.
When the signature is the one of an earlier walk, every file is as that walk found it, so
every fingerprint that walk trusted is trusted again as a whole: the same rule as the
file-by-file one (`stat` unchanged since the hash was recorded), without a lookup per file.

A tree is kept in this process (the next check of a notebook) and saved beside the data
(the first check of a new process) as one binary file, written whole under another name
then renamed over the old one, and read only if its length and checksum agree: a torn or
damaged file is never taken, the check falls back to the file-by-file rule.
"""
from __future__ import annotations

import hashlib
import os
import struct
import threading
from itertools import starmap
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Iterable, Iterator

from ..paths import data_dir
from .busy import untracked

SAVED_NAME = "resident-fingerprints.bin"
FORMER_NAME = "resident-fingerprints.json"  # the JSON file earlier versions kept: replaced, removed on the first save
MAGIC = b"JSPRINT1"
HEADER = struct.Struct("<8s32sQQ")  # magic, signature (zeros: none), files, files of unknown fingerprint
ROW = struct.Struct("<QQqqq")  # device, inode, size, mtime_ns, ctime_ns: the file-by-file rule's key
DIGEST = 32  # a raw sha256; all zeros: not known (an empty file, a file not hashed, or hashed in a racy window)
ZERO = bytes(DIGEST)
NO_SIGNATURE = bytes(32)
KEPT_TREES = 4  # trees kept in a process: a few configs or globs checked in turn

_identity = attrgetter("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
_name, _stat = itemgetter(0), itemgetter(1)
_LENGTHS = struct.Struct("<QQQ")


def tree_signature(batches: list[tuple[str, str, list[tuple[str, os.stat_result]]]]) -> bytes | None:
    """One digest of a walk's (folder, glob, [(name, stat)]) batches, or None if a value does not fit
    the encoding (the check then goes file by file). Lengths prefix each part, so the encoding is
    injective: two walks that differ in anything the index holds have different signatures."""
    digest = hashlib.blake2b(digest_size=32, person=b"js-residents")
    try:
        for folder, glob, found in batches:
            head = f"{folder}\0{glob}".encode("utf-8", "surrogateescape")
            names = "\0".join(map(_name, found)).encode("utf-8", "surrogateescape")
            digest.update(_LENGTHS.pack(len(head), len(names), len(found)))
            digest.update(head)
            digest.update(names)
            # C loops over the stats: a Python loop per file would cost as much as the index itself
            digest.update(b"".join(starmap(ROW.pack, map(_identity, map(_stat, found)))))
    except (struct.error, UnicodeError):
        return None
    return digest.digest()


class Tree:
    """The fingerprints of one walk, a slot per distinct resident file (by device and inode) in walk
    order: `digests` holds slot i's raw sha256 at [32 i, 32 i + 32), zeros where none is trusted."""

    def __init__(self, signature: bytes | None, by_inode: dict, by_size: dict):
        self.signature, self.by_inode, self.by_size = signature, by_inode, by_size
        self.digests = bytearray(DIGEST * len(by_inode))
        self.sizes = frozenset(by_size)
        self.lock = threading.Lock()  # one check at a time fills a tree: `unknown` must stay exact
        self.nonempty = sum(map(len, by_size.values()))
        self.unknown = self.nonempty  # non-empty files with no trusted fingerprint yet
        self.adopted = False  # the saved tree was looked at
        self.taken = False  # and was this walk's: its fingerprints are this tree's
        self._lookup: set[bytes] | None = None
        self._order: list | None = None

    def digest(self, slot: int) -> bytes | None:
        """Slot `slot`'s trusted sha256, or None."""
        raw = bytes(self.digests[slot * DIGEST:(slot + 1) * DIGEST])
        return None if raw == ZERO else raw

    def trust(self, found: list[tuple[int, bytes]]) -> None:
        """Take these (slot, raw sha256) as fingerprints the file-by-file rule trusted, each of a slot
        that had none (the caller holds `lock` and looked)."""
        digests = self.digests
        for slot, raw in found:
            digests[slot * DIGEST:(slot + 1) * DIGEST] = raw
        self.unknown -= len(found)
        if self._lookup is not None:
            self._lookup.update(raw for _, raw in found)

    def find(self, raw: bytes) -> tuple[int, object] | None:
        """(slot, resident) of the first file in walk order whose trusted sha256 is `raw`, or None."""
        if len(raw) != DIGEST or raw == ZERO:
            return None
        with self.lock:  # a fingerprint trusted while the lookup is built must not be left out of it
            if self._lookup is None:  # built on the first question: a check that asks none pays nothing
                view = bytes(self.digests)
                self._lookup = {view[i:i + DIGEST] for i in range(0, len(view), DIGEST)}
            if raw not in self._lookup:
                return None
            start = 0
            while (at := self.digests.find(raw, start)) >= 0:
                if at % DIGEST == 0:  # a whole slot, not 32 bytes across two
                    if self._order is None:
                        self._order = list(self.by_inode.values())  # slot order is the walk's
                    return at // DIGEST, self._order[at // DIGEST]
                start = at + 1
        return None

    def take(self, saved: "Saved") -> bool:
        """Take a saved tree's fingerprints if it is this walk's; False if it is another's."""
        if self.signature is None or saved.signature != self.signature or saved.count != len(self.by_inode):
            return False
        if not 0 <= saved.unknown <= self.nonempty:
            return False  # not a count this walk can have: not taken
        self.digests[:] = saved.digests
        self.unknown, self._lookup = saved.unknown, None
        return True

    def rows(self) -> bytes:
        """The slots' stat identities, in slot order, as saved (the file-by-file rule's keys)."""
        return b"".join(starmap(ROW.pack, map(_identity, map(itemgetter(3), self.by_inode.values()))))


class Saved:
    """A saved tree as read back whole: its signature, rows and digests (the file's own bytes)."""

    def __init__(self, data: bytes):
        _, self.signature, self.count, self.unknown = HEADER.unpack_from(data)
        rows_at = HEADER.size
        digests_at = rows_at + self.count * ROW.size
        self._data, self._rows_at, self._digests_at = data, rows_at, digests_at
        self.digests = memoryview(data)[digests_at:digests_at + self.count * DIGEST]

    def entries(self) -> Iterator[tuple[tuple[int, int, int, int, int], bytes]]:
        """(device, inode, size, mtime_ns, ctime_ns), raw sha256 of each file whose fingerprint is known."""
        rows = ROW.iter_unpack(memoryview(self._data)[self._rows_at:self._digests_at])
        return ((row, raw) for row, raw in zip(rows, _slices(bytes(self.digests), DIGEST)) if raw != ZERO)

    def by_row(self) -> dict[bytes, bytes]:
        """Raw sha256 by packed ROW (device, inode, size, mtime_ns, ctime_ns) of each file whose
        fingerprint is known: the file-by-file rule for a whole walk in one dict lookup a file."""
        rows = bytes(memoryview(self._data)[self._rows_at:self._digests_at])
        return {row: raw for row, raw in zip(_slices(rows, ROW.size), _slices(bytes(self.digests), DIGEST))
                if raw != ZERO}


def _slices(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def read_saved(path: Path) -> Saved | None:
    """The tree saved at `path`, or None when there is none, or it is not whole and intact
    (wrong magic, a length other than its header says, or a checksum that does not agree)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < HEADER.size + 32 or not data.startswith(MAGIC):
        return None
    body, checksum = data[:-32], data[-32:]
    _, _, count, _ = HEADER.unpack_from(body)
    if len(body) != HEADER.size + count * (ROW.size + DIGEST):
        return None  # torn, or grown: its rows cannot be told apart
    if hashlib.blake2b(body, digest_size=32).digest() != checksum:
        return None
    return Saved(body)


def write_saved(path: Path, signature: bytes | None, rows: bytes, digests: bytes, unknown: int) -> None:
    """Save a tree at `path` atomically: written whole under a name no other writer uses, then
    renamed over the old file, so a reader finds the old tree or the new one, never part of one
    (and a file torn by a crash fails its checksum). A cache: a failure leaves the old file, or
    none, and the next process hashes what it must."""
    count = len(digests) // DIGEST
    body = HEADER.pack(MAGIC, signature or NO_SIGNATURE, count, unknown) + rows + digests
    data = body + hashlib.blake2b(body, digest_size=32).digest()
    temp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with untracked():  # the guard's own file, not the process's output
            # the mode a plain open gives (0666 less the umask), as the saved fingerprints always had
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(temp, path)
            path.with_name(FORMER_NAME).unlink(missing_ok=True)  # its fingerprints are in this file now
    except OSError:
        temp.unlink(missing_ok=True)


# (device, inode) -> (size, mtime, ctime, sha256) of files this process hashed or looked up: a
# notebook checks the same resident folders again and again, and a memo is cheaper than SQLite
memo: dict[tuple[int, int], tuple[int, int, int, str]] = {}
MEMO_ENTRIES = 1 << 18


# The resident files' fingerprints, kept between processes in one file: a new process takes them
# as a whole when its walk is the saved one, else file by file while `stat` agrees.
loaded: list[Path] = []  # the saved file this process's state belongs to; cleared: as a new process
state: dict[str, object] = {}  # "saved": the saved tree as read, "rows": by row, "memo": in memo
trees: dict[bytes, Tree] = {}  # by signature: the walks this process checked last


def process_state() -> Path:
    """The saved file's path; the state kept for it is dropped when the data directory changes."""
    path = data_dir() / SAVED_NAME
    if loaded != [path]:
        loaded[:] = [path]
        state.clear()
        trees.clear()
    return path


def saved_tree() -> Saved | None:
    """The saved tree, read once per process state (None: none, or not intact)."""
    path = process_state()
    if "saved" not in state:
        with untracked():
            state["saved"] = read_saved(path)
    return state["saved"]  # type: ignore[return-value]


def saved_rows() -> dict[bytes, bytes]:
    """`Saved.by_row` of the saved tree, built once per process state ({} when none is saved)."""
    if "rows" not in state:
        saved = saved_tree()
        state["rows"] = saved.by_row() if saved is not None else {}
    return state["rows"]  # type: ignore[return-value]


def load_saved() -> None:
    """The saved fingerprints into the memo, each to count while `stat` agrees (once per process)."""
    saved = saved_tree()
    if state.get("memo") or saved is None:
        return
    state["memo"] = True
    memo.update({(dev, ino): (size, mtime, ctime, raw.hex()) for (dev, ino, size, mtime, ctime), raw in saved.entries()})


def save_entries(keys: Iterable[tuple[int, int]]) -> None:
    """Save these files' memo entries, as a tree of no walk (taken only file by file)."""
    rows, digests = [], []
    for key in keys:
        if key in memo:
            size, mtime, ctime, sha = memo[key]
            try:
                rows.append(ROW.pack(*key, size, mtime, ctime))
            except Exception:  # struct.error: a value the format cannot hold, left out
                continue
            digests.append(bytes.fromhex(sha))
    write_saved(process_state(), None, b"".join(rows), b"".join(digests), 0)
