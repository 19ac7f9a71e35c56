"""SFTP failures as OSErrors that say what failed, on which file of which server, and what to do.

asyncssh raises an SFTPError carrying the server's status and its reason, often just
`Failure`: OpenSSH's server (SFTP version 3) reports a full disk, a quota, a read-only
filesystem and a name that exists already all as the one status FAILURE (4). For a
failed write the server is asked (statvfs@openssh.com) whether its filesystem is full or
read-only, and the error says which. The OSError types and errnos are the ones the sync
engine tells apart (`fsutil.is_permanent`: a full or read-only disk is not retried).
"""
from __future__ import annotations

import errno
import posixpath
from typing import Any

FULL_BELOW = 1 << 20  # free bytes under which a failed write is put down to a full disk
_ST_RDONLY = 1  # statvfs's f_flag bit, as OpenSSH's server sends it


def server_of(fs: Any) -> str:
    """`ssh://[user@]host[:port]` of an sshfs filesystem, as a storage URL names it."""
    options = getattr(fs, "storage_options", None) or {}
    args = getattr(fs, "storage_args", None) or ()
    host = args[0] if args else options.get("host", "?")
    user = options.get("username")
    port = options.get("port")
    return f"ssh://{user + '@' if user else ''}{host}{':' + str(port) if port and int(port) != 22 else ''}"


async def explain(fs: Any, exc: BaseException, op: str, path: str, *, writes: bool = False) -> OSError:
    """The OSError for `exc` (an asyncssh SFTPError) raised by `op` on `path` of `fs` (sshfs).

    `writes`: the operation wrote data, so a bare FAILURE is checked against the
    server's free space and read-only flag (one more request, on failures only).
    The error is marked `explained`: its message already says where and what to do."""
    error = await _explain(fs, exc, op, path, writes=writes)
    error.explained = True  # type: ignore[attr-defined]
    return error


async def _explain(fs: Any, exc: BaseException, op: str, path: str, *, writes: bool) -> OSError:
    from ..ssh.library import asyncssh

    where = f"{op} {server_of(fs)}{path}"
    reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
    if isinstance(exc, (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
        return _full(where, reason)
    if isinstance(exc, (asyncssh.SFTPPermissionDenied, asyncssh.SFTPWriteProtect)):
        user = (getattr(fs, "storage_options", None) or {}).get("username") or "the SSH user"
        return PermissionError(errno.EACCES, f"{where}: permission denied{_also(reason)}. Let {user} write there "
                                             "(chmod/chown on the server) or choose a path it owns.")
    if isinstance(exc, (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath)):
        return FileNotFoundError(errno.ENOENT, f"{where}: no such file or folder{_also(reason)}. Check the path; "
                                               "the folder a file goes into must exist.")
    if isinstance(exc, asyncssh.SFTPFileAlreadyExists):
        return FileExistsError(errno.EEXIST, f"{where}: it exists already. Remove it or choose another name.")
    if isinstance(exc, asyncssh.SFTPNotADirectory):
        return NotADirectoryError(errno.ENOTDIR, f"{where}: a part of the path is a file, not a folder. Fix the path.")
    if isinstance(exc, asyncssh.SFTPFileIsADirectory):
        return IsADirectoryError(errno.EISDIR, f"{where}: that is a folder, not a file. Fix the path.")
    if isinstance(exc, asyncssh.SFTPDirNotEmpty):
        return OSError(errno.ENOTEMPTY, f"{where}: the folder is not empty. Empty it first or choose another folder.")
    if isinstance(exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)):
        return ConnectionResetError(errno.ECONNRESET, f"{where}: the SFTP link was lost ({reason}). Check the network "
                                                      "and the server, then run the same command again.")
    if isinstance(exc, asyncssh.SFTPOpUnsupported):
        return OSError(errno.EOPNOTSUPP, f"{where}: the server does not support this ({reason}).")
    if writes and isinstance(exc, asyncssh.SFTPFailure):
        state, free = await _disk_state(fs, path)
        if state == "read-only":
            return OSError(errno.EROFS, f"{where}: the server's filesystem there is read-only. Choose a writable "
                                        "folder, or ask the server's admins to make it writable.")
        if state == "full":
            return _full(where, f"{free} bytes free")
    code = getattr(exc, "code", "?")
    return OSError(errno.EIO, f"{where}: the server reported {reason!r} (SFTP status {code}), which OpenSSH's server "
                              "says for a full disk or quota, a read-only filesystem, or a name that exists already "
                              "as another kind (file or folder). Check free space (`df -h`) and the path on the server.")


def _also(reason: str) -> str:
    """The server's own words, where they say more than its status (OpenSSH's repeat it)."""
    plain = reason.lower().rstrip(".")
    return "" if plain in ("permission denied", "no such file", "no such file or directory", "no such path") else f" ({reason})"


def _full(where: str, detail: str) -> OSError:
    return OSError(errno.ENOSPC, f"{where}: no space left on the server's filesystem ({detail}). Free space there or "
                                 "raise the quota, or choose another storage; then run the same command again.")


async def _disk_state(fs: Any, path: str) -> tuple[str, int]:
    """("read-only" or "full" or "", free bytes) of the filesystem `path` lies on; ("", -1)
    when the server cannot say."""
    from ..ssh.library import asyncssh

    folder = posixpath.dirname(path.rstrip("/")) or "/"
    try:
        async with fs._pool.get() as channel:
            attrs = await channel.statvfs(folder)
    except (asyncssh.Error, OSError):
        return "", -1
    free = attrs.bavail * attrs.frsize
    if attrs.flags & _ST_RDONLY:
        return "read-only", free
    return ("full" if free < FULL_BELOW or (attrs.files and not attrs.favail) else ""), free


async def call(fs: Any, op: str, path: str, fn: Any, *args: Any, writes: bool = False, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, its SFTP errors raised as OSErrors that say `op`, `path`, the server and the fix,
    of the types the engine tells apart (permanent or worth a retry); see `explain`."""
    # asyncssh is imported here, not at the top: a runner on a site may have no `ssh` extra
    from ..ssh.library import asyncssh

    try:
        return await fn(*args, **kwargs)
    except asyncssh.SFTPError as exc:
        raise await explain(fs, exc, op, path, writes=writes) from exc
