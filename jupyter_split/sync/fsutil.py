"""fsspec plumbing the engine needs: resolve a URL, list a tree, hash a stored file."""
from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import stat
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import fsspec

from .. import verified
from ..residency.fingerprints import local_sha256
from ..residency.pins import Pin, PinError, PinnedReader
from . import s3read, sftp
from .manifest import MANIFEST_NAME, STAGING_NAME, is_local, is_object_store, is_temp_manifest
from .remote_worker import RemoteWorker
from .width import MAX_CONNECTIONS, START, Connections, Width, remember_width, remembered_width

# asyncssh prefers chacha20-poly1305, which it runs at well under half the speed of
# AES-GCM on a CPU with AES instructions; ask for the AEAD AES ciphers first.
SFTP_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                "aes128-ctr", "aes192-ctr", "aes256-ctr"]
KEEPALIVE = 10.0
# botocore keeps 10 connections per client; small files from a store abroad wait on
# round trips, not bytes, so they want more requests in flight.
S3_CONNECTIONS = 64


def _s3_config() -> dict[str, Any]:
    """The S3 client's settings unless the options set them: a wider pool, and no checksum of every
    request's body that the copy does not need. botocore >= 1.36 adds a CRC32 of each PUT's body,
    computed on the event loop's one thread (about 0.1 s of CPU a 400 MiB copy), and over plain
    http it signs every body with its sha256 (another pass over each byte, which it leaves out over
    https where Content-MD5 is there). Every body the copy sends (a file, a part, the manifest)
    carries its MD5 as Content-MD5, a header the signature covers (the store refuses a body that
    differs), and the copy compares each ETag the store answers: the same check over http as over
    https, a pass over the bytes fewer (a 400 MiB copy to a store on this machine: 1.62 -> 1.36 s)."""
    from botocore.config import Config

    wanted: dict[str, Any] = {"max_pool_connections": S3_CONNECTIONS, "s3": {"payload_signing_enabled": False}}
    if "request_checksum_calculation" in Config.OPTION_DEFAULTS:  # botocore < 1.36 knows no such setting
        wanted["request_checksum_calculation"] = "when_required"
    return wanted


@dataclass
class Location:
    """One side of a copy: its URL as the user wrote it, its filesystem and root path."""

    url: str
    fs: Any
    root: str
    _worker: RemoteWorker | None = field(default=None, repr=False, compare=False)
    _streams: Connections | None = field(default=None, repr=False, compare=False)
    # the options the filesystem was made with: extra connections and reconnections reuse them
    options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    max_connections: int = MAX_CONNECTIONS  # the cap on SSH connections to an SFTP server (`[sync] max_connections`)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # manifest temp files of killed publishers, seen by the last `list_tree` of the root
    stale_manifests: list[str] = field(default_factory=list, repr=False, compare=False)
    # the files (relative paths) the last local `list_tree` reached through a symlink; None: not known
    linked: set[str] | None = field(default=None, repr=False, compare=False)
    # whether the last `list_tree` of the root (on an SFTP server) met the staging folder; None: not known
    staging_seen: bool | None = field(default=None, repr=False, compare=False)

    def path(self, rel: str) -> str:
        """The full path of `rel` under the root; the root itself for ""."""
        return posixpath.join(self.root, rel) if rel else self.root

    @property
    def staging(self) -> str:
        """The folder where an in-flight copy keeps its staged files and parts."""
        return self.path(STAGING_NAME)

    @property
    def object_store(self) -> bool:
        """Whether the store is one where a whole PUT is atomic (S3 and the like): no temp names, no renames."""
        return is_object_store(self.fs)

    @property
    def sftp(self) -> bool:
        """Whether the location is an SFTP server reached through sshfs."""
        return sftp.is_sshfs(self.fs)

    @property
    def worker(self) -> RemoteWorker | None:
        """The process an SFTP location keeps on its server (hashing, small writes); None elsewhere."""
        if self._worker is None and self.sftp:
            self._worker = RemoteWorker(self.fs)
        return self._worker

    @property
    def streams(self) -> Connections | None:
        """The SSH connections (each with its SFTP sessions) big files are written on, for an SFTP location; None elsewhere."""
        if self._streams is None and self.sftp:
            width = Width(self.max_connections, start=remembered_width(self.server) or START)
            self._streams = Connections(self.fs, self._connect, width)
        return self._streams

    @property
    def server(self) -> str:
        """"host:port" of an SFTP location (the key its learnt width is kept under)."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or 22}"

    def keep_width(self) -> None:
        """Keep the width this copy learnt for the server, where the next copy there starts."""
        learnt = self._streams.width.learnt if self._streams is not None else None
        if learnt is not None:
            remember_width(self.server, learnt)

    def revive(self) -> bool:
        """After a dropped link, a new connection to an SFTP server (and a new kept process);
        True when one was made. The engine calls it before it retries."""
        with self._lock:
            if self._streams is not None:
                self._streams.prune()  # connections of our own that died, even with this one alive
            if not self.sftp or not _dead_ssh(self.fs):
                return False
            type(self.fs)._cache.pop(self.fs._fs_token, None)  # fsspec would hand back the dead instance
            self.fs = fsspec.core.url_to_fs(self.url, **self.options)[0]
            worker, self._worker = self._worker, None
            if self._streams is not None:
                self._streams.revive(self.fs)
        if worker is not None:
            try:
                worker.close()
            except Exception:
                pass  # it died with the link
        return True

    def _connect(self) -> Any:
        # another SSH connection, with the very options (host keys checked the same way); not
        # fsspec's cached instance, which is the connection there is already
        return fsspec.core.url_to_fs(self.url, skip_instance_cache=True, **self.options)[0]

    def close(self) -> None:
        """Stop what this location started on its server (the connection stays cached)."""
        for started in (self._worker, self._streams):
            if started is not None:
                started.close()


def resolve(url: str, options: dict[str, Any] | None) -> Location:
    """The filesystem for `url` built from its own options (credentials stay per side)."""
    options = dict(options or {})
    if fsspec.core.split_protocol(url)[0] in ("ssh", "sftp"):
        options.setdefault("encryption_algs", SFTP_CIPHERS)
        # a connection a link dropped without a reset (a middlebox's silence) ends after 3 unanswered
        # keepalives: its transfers fail and are resumed on a new one, instead of waiting for ever
        options.setdefault("keepalive_interval", KEEPALIVE)
    if fsspec.core.split_protocol(url)[0] in ("s3", "s3a"):
        options["config_kwargs"] = {**_s3_config(), **options.get("config_kwargs", {})}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
        if _dead_ssh(fs):
            # fsspec hands back its cached instance; after a dropped link its connection is
            # closed for good, so make a fresh one (the old instance leaves the cache).
            type(fs)._cache.pop(fs._fs_token, None)
            fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"cannot open {url!r}: {exc}. Install the backend's extra (e.g. jupyter_split[s3]) or fix the URL.") from None
    return Location(url=url, fs=fs, root=root.rstrip("/") or "/", options=options)


def _dead_ssh(fs: Any) -> bool:
    client = getattr(fs, "client", None)
    is_closed = getattr(client, "is_closed", None)
    return bool(is_closed and is_closed())


def list_tree(loc: Location) -> dict[str, int]:
    """Relative path -> size of every file under the root, leaving out our own bookkeeping."""
    try:
        if loc.sftp:
            folders, found = sftp.find(loc.fs, loc.root)
            loc.staging_seen = posixpath.normpath(loc.staging) in {posixpath.normpath(f) for f in folders}
        elif is_local(loc.fs):
            found = _local_find(loc.root)
        else:
            found = loc.fs.find(loc.root, detail=True, withdirs=False)
    except FileNotFoundError:
        if loc.sftp:
            loc.staging_seen = False
        return {}
    prefix = loc.root.rstrip("/") + "/"
    sizes: dict[str, int] = {}
    stale: list[str] = []
    linked: set[str] = set()
    for name, info in found.items():
        name = name.rstrip("/")
        if not name.startswith(prefix):
            continue
        rel = name[len(prefix):]
        if _bookkeeping(rel):
            if is_temp_manifest(rel):
                stale.append(name)
            continue
        sizes[rel] = int(info.get("size") or 0)
        if info.get("linked"):
            linked.add(rel)
    loc.stale_manifests = stale
    loc.linked = linked if is_local(loc.fs) and not loc.sftp else None
    return sizes


def _local_find(root: str) -> dict[str, dict[str, int]]:
    """path -> {"size", "linked"} of every regular file under `root`, through symlinked folders
    too (each real folder once, so a loop ends); a symlink is listed under its own name and
    read through, as a copy of the tree would (the guard judges the file it resolves to).
    `linked`: the path passes through a symlink (the file's own, or a folder's on the way)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(root)
    found: dict[str, dict[str, int]] = {}
    seen: set[tuple[int, int]] = set()
    pending = [(root.rstrip("/") or "/", False)]
    while pending:
        folder, via_link = pending.pop()
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    est = entry.stat()
                except OSError:  # a dangling symlink: nothing to send
                    continue
                linked = via_link or entry.is_symlink()
                if stat.S_ISDIR(est.st_mode):
                    pending.append((entry.path, linked))
                elif stat.S_ISREG(est.st_mode):
                    found[entry.path] = {"size": est.st_size, "linked": linked}
    return found


def make_dirs(loc: Location, folders: list[str]) -> None:
    """Create each folder (and its parents)."""
    if loc.sftp:
        sftp.make_dirs(loc.fs, folders, loc.root)
        return
    for folder in sorted(set(folders)):
        loc.fs.makedirs(folder, exist_ok=True)


def move_all(loc: Location, moves: list[tuple[str, str]]) -> None:
    """Rename each (old, new) within `loc`'s filesystem, replacing what `new` names."""
    if loc.sftp:
        moved = loc.worker.move(moves) if len(moves) > 1 else set()
        sftp.rename_all(loc.fs, [(old, new) for old, new in moves if new not in moved])
        return
    # fsspec's local mv stats and copies its way there: 3x the time of os.replace for 10,000 files
    rename = os.replace if is_local(loc.fs) else loc.fs.mv
    for old, new in moves:
        rename(old, new)


def _bookkeeping(rel: str) -> bool:
    return rel == MANIFEST_NAME or rel.split("/", 1)[0] == STAGING_NAME or is_temp_manifest(rel)


def hash_many(loc: Location, files: dict[str, int], chunk: int, pool: Executor | None) -> dict[str, str | None]:
    """sha256 of each stored file (None if it is gone), as the destination holds it.

    On an SFTP server they are hashed there, in batches, by the location's kept process
    (python3, else `sha256sum`); elsewhere, or where the server runs no commands, they are
    read back, in parallel on `pool` when given.
    """
    digests: dict[str, str | None] = {}
    if loc.worker is not None:
        for batch in _batches(list(files)):
            digests.update(loc.worker.hash(batch))
    mapper = pool.map if pool is not None else map
    if is_local(loc.fs):  # a file unchanged since this machine hashed it is not read again (`verified`)
        stats = {path: _stat(path) for path in files}
        there = [path for path in files if stats[path] is not None]
        digests.update((path, None) for path in files if stats[path] is None)
        digests.update((path, sha) for path, sha in zip(there, verified.known_many([stats[p] for p in there])) if sha)
        todo = [path for path in there if path not in digests]
        digests.update(zip(todo, mapper(lambda path: local_sha256(path, stats[path]), todo)))
        return digests
    rest = [path for path in files if path not in digests]
    digests.update(zip(rest, mapper(lambda path: _read_sha256(loc, path, chunk, files[path]), rest)))
    return digests


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def open_read(loc: Location, path: str, chunk: int, pin: Pin | None = None, size: int | None = None,
              etag: str | None = None, whole: bool = True) -> Any:
    """A sequential reader: one streamed GET on S3 (a big object of known `size`: ranged GETs on
    several connections), a plain file on this machine (fsspec's local file object costs more
    than reading a small file), the filesystem's own elsewhere.

    With `pin` (a local file as the residency guard judged it), every read is checked to
    come from that very file, unchanged: a file swapped or rewritten since is not sent. With
    `etag` (an S3 object's version as the guard judged it), only that version is read. Not
    `whole`: the reader may need only the file's head (the guard's scan), so a big object of a far
    store is asked for a little at first, more as it reads on.
    """
    if s3read.supports(loc.fs):
        if size is not None and size > s3read.RANGED_MIN and not s3read.near(loc.fs, path):
            return s3read.S3Ranges(loc.fs, path, size, etag, head_first=not whole)  # one GET rides one flow
        return s3read.S3Stream(loc.fs, path, etag)
    if not is_local(loc.fs):
        return loc.fs.open(path, "rb", block_size=chunk)
    return PinnedReader(path, pin) if pin is not None else open(path, "rb")


def read_hashed(handle: Any, chunk: int, into: memoryview | None = None) -> tuple[int, str]:
    """(bytes read, their sha256) of `handle` from here to its end, `chunk` bytes at a time.

    With `into`, the bytes land there (`readinto`: no copy) and reading stops when it is full;
    the caller checks the count and whether anything is left."""
    digest = hashlib.sha256()
    got = 0
    if into is None:
        while data := handle.read(chunk):
            digest.update(data)
            got += len(data)
        return got, digest.hexdigest()
    while got < len(into):
        n = handle.readinto(into[got:got + chunk])
        if not n:
            break
        digest.update(into[got:got + n])
        got += n
    return got, digest.hexdigest()


def _read_sha256(loc: Location, path: str, chunk: int, size: int | None = None) -> str | None:
    try:
        with open_read(loc, path, chunk, size=size) as handle:
            return read_hashed(handle, chunk)[1]
    except FileNotFoundError:
        return None


def _batches(paths: list[str], limit: int = 100_000) -> list[list[str]]:
    # Bounded command lines: the shell reads each whole before it runs it.
    batches: list[list[str]] = []
    length = limit
    for path in paths:
        if length + len(path) > limit:
            batches.append([])
            length = 0
        batches[-1].append(path)
        length += len(path) + 3
    return batches


def is_permanent(exc: BaseException) -> bool:
    """Errors a retry cannot fix: permissions, a read-only or full destination, a missing source."""
    if isinstance(exc, (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PinError)):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES)


def explain(exc: BaseException, where: str) -> str:
    """One line naming what failed, where, and what to do about it."""
    if getattr(exc, "explained", False):  # an SFTP error that names its server, path and fix already
        return f"{where}: {exc}"
    code = getattr(exc, "errno", None)
    if code == errno.EROFS or isinstance(exc, PermissionError) or code == errno.EACCES:
        return f"{where} cannot be written ({exc}): the destination is read-only or not yours. Fix its permissions or pick another destination."
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{where}: no space left ({exc}). Free space or raise the quota, then run the same copy again: finished files are kept."
    if isinstance(exc, FileNotFoundError):
        return f"{where}: not found ({exc})."
    return f"{where}: {type(exc).__name__}: {exc}"
