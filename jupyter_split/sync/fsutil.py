"""fsspec plumbing the engine needs: resolve a URL, list a tree, hash a stored file."""
from __future__ import annotations

import errno
import hashlib
import posixpath
import shlex
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.asyn import sync

from .manifest import MANIFEST_NAME, STAGING_NAME, is_object_store

# Files at least this big are hashed by `sha256sum` on an SFTP server rather than
# read back over the link; smaller ones cost less to read than to start a command.
REMOTE_HASH_MIN = 1 << 20


@dataclass
class Location:
    """One side of a copy: its URL as the user wrote it, its filesystem and root path."""

    url: str
    fs: Any
    root: str

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    @property
    def staging(self) -> str:
        return self.path(STAGING_NAME)

    @property
    def object_store(self) -> bool:
        return is_object_store(self.fs)

    @property
    def sftp(self) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        return any(p in ("ssh", "sftp") for p in protocols) and hasattr(self.fs, "client")


def resolve(url: str, options: dict[str, Any] | None) -> Location:
    """The filesystem for `url` built from its own options (credentials stay per side)."""
    try:
        fs, root = fsspec.core.url_to_fs(url, **(options or {}))
    except (ImportError, ValueError) as exc:
        raise ValueError(f"cannot open {url!r}: {exc}. Install the backend's extra (e.g. jupyter_split[s3]) or fix the URL.") from None
    return Location(url=url, fs=fs, root=root.rstrip("/") or "/")


def list_tree(loc: Location) -> dict[str, int]:
    """Relative path -> size of every file under the root, leaving out our own bookkeeping."""
    try:
        found = loc.fs.find(loc.root, detail=True, withdirs=False)
    except FileNotFoundError:
        return {}
    prefix = loc.root.rstrip("/") + "/"
    sizes: dict[str, int] = {}
    for name, info in found.items():
        name = name.rstrip("/")
        if not name.startswith(prefix):
            continue
        rel = name[len(prefix):]
        if _bookkeeping(rel):
            continue
        sizes[rel] = int(info.get("size") or 0)
    return sizes


def _bookkeeping(rel: str) -> bool:
    first = rel.split("/", 1)[0]
    return rel == MANIFEST_NAME or first == STAGING_NAME or (first.startswith(f".{MANIFEST_NAME}.") and first.endswith(".tmp"))


def hash_stored(loc: Location, path: str, size: int, chunk: int) -> str:
    """sha256 of a file as stored: `sha256sum` on an SFTP server for big files, else read back."""
    if loc.sftp and size >= REMOTE_HASH_MIN:
        digest = _remote_sha256(loc, path)
        if digest is not None:
            return digest
    digest = hashlib.sha256()
    with loc.fs.open(path, "rb", block_size=chunk) as handle:
        while data := handle.read(chunk):
            digest.update(data)
    return digest.hexdigest()


def _remote_sha256(loc: Location, path: str) -> str | None:
    # None when the server has no shell or no sha256sum (an SFTP-only account):
    # then the caller reads the file back instead.
    command = shlex.join(["sha256sum", "--", path])
    try:
        result = sync(loc.fs.loop, loc.fs.client.run, command, check=False)
    except OSError:
        return None
    if result.exit_status != 0 or not result.stdout:
        return None
    # sha256sum prefixes the line with a backslash when it had to escape the file name
    return str(result.stdout).split(" ", 1)[0].strip().lstrip("\\") or None


def is_permanent(exc: BaseException) -> bool:
    """Errors a retry cannot fix: permissions, a read-only or full destination, a missing source."""
    if isinstance(exc, (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES)


def explain(exc: BaseException, where: str) -> str:
    """One line naming what failed, where, and what to do about it."""
    code = getattr(exc, "errno", None)
    if code == errno.EROFS or isinstance(exc, PermissionError) or code == errno.EACCES:
        return f"{where} cannot be written ({exc}): the destination is read-only or not yours. Fix its permissions or pick another destination."
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{where}: no space left ({exc}). Free space or raise the quota, then run the same copy again: finished files are kept."
    if isinstance(exc, FileNotFoundError):
        return f"{where}: not found ({exc})."
    return f"{where}: {type(exc).__name__}: {exc}"
