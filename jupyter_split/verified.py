"""Local files this machine has hashed, trusted while `stat` says they are unchanged.

Verifying a checkpoint by reading it back costs about a second per 2 GB here, on
every load. Like git's index and DVC's state database, a local file whose sha256
this machine computed by reading it is not read again while its device, inode,
size, mtime and ctime are those recorded with the hash: any write changes mtime
and ctime. A write in the same clock tick as the recorded stamps would leave them
as they were, so no record is taken while the file's mtime is within RACY_NS of
the moment it was stat'ed (a file just written is hashed on its next load too).
A missing or unwritable record store only means every file is hashed.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from typing import Iterator

from .paths import data_dir

RACY_NS = 100_000_000  # far above the clock tick of ext4, xfs, btrfs or tmpfs timestamps
COARSE_RACY_NS = 2_000_000_000  # filesystems keeping whole seconds (FAT: two)

_lock = threading.Lock()
_opened: dict = {}
# records this process has read or written, by store and stat: a record never changes
# meaning for the same stat, so a second lookup (the open file's, after the path's) is free
_seen: dict[tuple, str] = {}
# rows `remember` holds while a `together` block is open (its depth): written in one transaction at
# its end, not one commit (a journal's fsyncs) a file: 10,000 small files took 14 s that way
_pending: list[tuple] = []
_depth = 0
_SCHEMA = ("CREATE TABLE IF NOT EXISTS verified (dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, "
           "ctime_ns INTEGER, sha256 TEXT, PRIMARY KEY (dev, ino))")


def known_sha256(st: os.stat_result) -> str | None:
    """The sha256 recorded for exactly this version of a file, or None."""
    key = _key(st)
    if key in _seen:
        return _seen[key]
    try:
        with _lock:
            row = _connect().execute("SELECT size, mtime_ns, ctime_ns, sha256 FROM verified WHERE dev = ? AND ino = ?",
                                     (st.st_dev, st.st_ino)).fetchone()
    except sqlite3.Error:
        _forget_connection()
        return None
    if row is None or tuple(row[:3]) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
        return None
    _note(key, row[3])
    return row[3]


def known_many(stats: list[os.stat_result]) -> list[str | None]:
    """`known_sha256` of many files in a few queries (once per 500 files of a device)."""
    found: list[str | None] = [None] * len(stats)
    wanted: dict[tuple[int, int], int] = {}
    for i, st in enumerate(stats):
        wanted.setdefault((st.st_dev, st.st_ino), i)
    by_dev: dict[int, list[int]] = {}
    for dev, ino in wanted:
        by_dev.setdefault(dev, []).append(ino)
    batches = [(dev, inos[start:start + 500]) for dev, inos in by_dev.items() for start in range(0, len(inos), 500)]
    try:
        with _lock:
            db = _connect()
            for dev, inos in batches:  # `dev = ? AND ino IN (...)` walks the primary key, a row at a time
                for dev, ino, size, mtime_ns, ctime_ns, sha in db.execute(
                        "SELECT dev, ino, size, mtime_ns, ctime_ns, sha256 FROM verified "
                        f"WHERE dev = ? AND ino IN ({','.join('?' * len(inos))})", [dev, *inos]):
                    st = stats[wanted[(dev, ino)]]
                    if (size, mtime_ns, ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
                        found[wanted[(dev, ino)]] = sha
    except sqlite3.Error:
        _forget_connection()
        return found
    for i, st in enumerate(stats):  # a second path to the same file (a hard link) shares its record
        if found[i] is None:
            first = wanted[(st.st_dev, st.st_ino)]
            if first != i and _same_version(stats[first], st):
                found[i] = found[first]
    return found


def _same_version(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def remember(st: os.stat_result, stat_ns: int, sha256: str) -> None:
    """Record the sha256 of the bytes read after `st` was taken at `stat_ns` (time.time_ns()).

    Nothing is recorded while the file's mtime is within the racy window of the stat:
    a write in the same tick could follow unseen. Inside a `together` block the record is
    written at the block's end (this process finds it at once).
    """
    racy = COARSE_RACY_NS if st.st_mtime_ns % 1_000_000_000 == 0 else RACY_NS
    if stat_ns - st.st_mtime_ns < racy:
        return
    row = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha256)
    with _lock:
        if _depth:
            _pending.append(row)
            _note(_key(st), sha256)
            return
    if _write([row]):
        _note(_key(st), sha256)


@contextmanager
def together() -> Iterator[None]:
    """A block (a copy: its guard, its sends and its checks, in any thread) whose records are written
    together at its end, in one transaction. Blocks may nest and overlap; the last to end writes."""
    global _depth
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            rows = _pending[:] if _depth == 0 else []
            if _depth == 0:
                _pending.clear()
        if rows:
            _write(rows)


def _write(rows: list[tuple]) -> bool:
    """Write `rows` in one transaction; False where the store could not take them (then the files are
    hashed again next time: slower, never wrong)."""
    try:
        with _lock:
            db = _connect()
            with db:
                db.executemany("INSERT OR REPLACE INTO verified VALUES (?, ?, ?, ?, ?, ?)", rows)
    except sqlite3.Error:
        _forget_connection()
        return False
    return True


def _key(st: os.stat_result) -> tuple:
    # the variables data_dir() is made of name the store, at a fraction of its cost
    store = tuple(os.environ.get(name) for name in ("JUPYTER_SPLIT_DATA", "XDG_DATA_HOME", "HOME"))
    return (store, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _note(key: tuple, sha256: str) -> None:
    if len(_seen) >= 4096:
        _seen.clear()
    _seen[key] = sha256


def _connect() -> sqlite3.Connection:
    """This process's connection to the record store (opened once: a lookup is then ~20 us)."""
    path = data_dir() / "verified.sqlite"
    key = (os.getpid(), path)  # a forked child opens its own
    if _opened.get("key") != key:
        if _opened.get("key", (None,))[0] == key[0]:
            _forget_connection()
        _opened.clear()  # another process's connection (inherited by fork) is left alone
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30, check_same_thread=False)  # used under _lock only
        db.execute(_SCHEMA)
        _opened.update(key=key, db=db)
    return _opened["db"]


def _forget_connection() -> None:
    db = _opened.pop("db", None)
    _opened.clear()
    if db is not None:
        try:
            db.close()
        except sqlite3.Error:
            pass
