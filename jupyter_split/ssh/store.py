"""`ssh://` and `sftp://` storage that always checks the server's host key, and says what failed.

sshfs, fsspec's SFTP backend, turns host key checking off unless it is given
`known_hosts`. This filesystem, registered for both protocols when `jupyter_split.sync`
is imported, checks the key against the storage options' `known_hosts`
or else ~/.ssh/known_hosts, as OpenSSH reads it (`hostkeys`): a missing file, an unknown,
changed or revoked key is refused before logging in, with the server's fingerprint and
the command that fixes it. Its operations raise OSErrors that name the operation, the
path on which server and the fix (`sync.sftp_errors`), where sshfs lets asyncssh's bare
SFTP errors through (`Failure`, with neither path nor host).
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
from pathlib import Path
from typing import Any

from .library import asyncssh
import sshfs
from fsspec.asyn import get_loop, sync, sync_wrapper
from sshfs.file import SSHFile
from sshfs.pools import SFTPSoftChannelPool

from . import hostkeys
from .login import HostKeyError
from ..sync.sftp_errors import explain, server_of

CONNECT_TIMEOUT = 30.0


def _explained(op: str, method: Any, arg: int = 0, writes: bool = False) -> Any:
    """`method` (async, of sshfs) with its SFTP errors as OSErrors saying `op`, the path (its
    positional argument `arg`), the server and the fix; sshfs's own FileNotFoundError, which
    names nothing, gets the path and server too."""
    @functools.wraps(method)
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except asyncssh.SFTPError as exc:
            raise await explain(self, exc, op, self._strip_protocol(args[arg]), writes=writes) from exc
        except FileNotFoundError as exc:
            if exc.strerror != os.strerror(errno.ENOENT) or exc.filename is not None or not args:
                raise  # not sshfs's, which names nothing
            raise FileNotFoundError(errno.ENOENT, f"{op} {server_of(self)}{self._strip_protocol(args[arg])}: no such "
                                                  "file or folder. Check the path.") from exc
    return call


class SharedSessionPool(SFTPSoftChannelPool):
    """sshfs's pool of SFTP sessions, where lookups made at once share a session one of them opened.

    sshfs's own opens one session per waiter in turn when several ask before the first is open
    (each waits for the lock, then opens another): three lookups at the start of a copy cost
    three session openings back to back, a dozen round trips on a far link. Here a waiter takes
    the session opened meanwhile while it has room (sshfs's threshold of users per session).
    """

    @contextlib.asynccontextmanager
    async def get(self) -> Any:
        """A session for one operation: the least used one with room, else a new one."""
        channel, users = self._least_used()
        if channel is None or users >= self._THRESHOLD:
            async with self._channels_lock:
                channel, users = self._least_used()  # opened while this one waited
                if channel is None or users >= self._THRESHOLD:
                    opened = await self._maybe_new_channel()
                    if opened is not None:
                        channel = opened
                        self._channels[channel] = 0
        if channel is None:
            raise ValueError("Can't create any SFTP connections!")
        self._channels[channel] += 1
        try:
            yield channel
        finally:
            self._channels[channel] -= 1


class VerifiedSSHFileSystem(sshfs.SSHFileSystem):
    """sshfs with the host key always checked (see the module) and SFTP errors explained."""

    def __init__(self, host: str, **kwargs: Any):
        port = int(kwargs.get("port") or hostkeys.DEFAULT_PORT)
        label = f"storage ssh://{hostkeys.entry_name(host, port)}"
        try:
            path = hostkeys.file_of(kwargs.get("known_hosts", ()))
            if Path(path).is_file():
                hostkeys.read(path)
        except ValueError as exc:
            raise HostKeyError(f"{label}: {exc}") from None
        kwargs["known_hosts"] = hostkeys.KnownHosts(path)
        kwargs.setdefault("pool_type", SharedSessionPool)
        if not Path(path).is_file():  # refused before logging in, with the fingerprint to check
            raise self._refusal(label, host, port, path, kwargs)
        try:
            super().__init__(host, **kwargs)
        except asyncssh.HostKeyNotVerifiable:
            raise self._refusal(label, host, port, path, kwargs) from None

    @staticmethod
    def _refusal(label: str, host: str, port: int, path: str, kwargs: dict[str, Any]) -> HostKeyError:
        connect = {name: kwargs[name] for name in ("tunnel", "config", "family", "local_addr") if name in kwargs}
        algs = hostkeys.algorithms_for(path, host, port) or ()
        timeout = float(kwargs.get("connect_timeout") or kwargs.get("timeout") or CONNECT_TIMEOUT)
        key, why = sync(kwargs.get("loop") or get_loop(), hostkeys.server_key, host, port, timeout,
                        server_host_key_algs=algs, **connect)
        return HostKeyError(hostkeys.explain(label, host, port, path, key, why))

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        return ExplainedSSHFile(self, self._strip_protocol(path), mode, **kwargs)

    _info = _explained("stat", sshfs.SSHFileSystem._info)
    _ls = _explained("list", sshfs.SSHFileSystem._ls)
    _cat_file = _explained("read", sshfs.SSHFileSystem._cat_file)
    _get_file = _explained("download", sshfs.SSHFileSystem._get_file)  # sshfs's first argument is the remote path
    _pipe_file = _explained("write", sshfs.SSHFileSystem._pipe_file, writes=True)
    _put_file = _explained("upload to", sshfs.SSHFileSystem._put_file, arg=1, writes=True)
    # asyncssh's makedirs looks before it creates: a failure is a real one, worth asking the disk about
    _mkdir = _explained("create the folder", sshfs.SSHFileSystem._mkdir, writes=True)
    _makedirs = _explained("create the folder", sshfs.SSHFileSystem._makedirs, writes=True)
    _rm_file = _explained("delete", sshfs.SSHFileSystem._rm_file)
    _rmdir = _explained("remove the folder", sshfs.SSHFileSystem._rmdir)
    _mv = _explained("rename", sshfs.SSHFileSystem._mv)
    # sshfs binds these to its own coroutines, not through the instance as fsspec does for the rest
    mkdir = sync_wrapper(_mkdir)
    makedirs = sync_wrapper(_makedirs)


class ExplainedSSHFile(SSHFile):
    """An open file whose SFTP errors say what failed, on which file of which server, and the fix.

    It also reads into a buffer (`readinto`), as Python's binary files do and sshfs's do not."""

    def __init__(self, fs: Any, path: str, mode: str = "rb", **kwargs: Any):
        try:
            super().__init__(fs, path, mode, **kwargs)
        except asyncssh.SFTPError as exc:
            raise sync(fs.loop, explain, fs, exc, f"open ({mode})", path, writes=any(c in mode for c in "wa+")) from exc

    def _do(self, op: str, name: str, *args: Any) -> Any:
        try:
            return getattr(super(), name)(*args)
        except asyncssh.SFTPError as exc:
            raise sync(self.loop, explain, self.fs, exc, op, self.path, writes=self.writable()) from exc

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left for -1); an SFTP error becomes an OSError saying what failed."""
        return self._do("read", "read", size)

    def readinto(self, buffer: Any) -> int:
        """Read up to len(buffer) bytes into `buffer`; 0 at the end of the file."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        """Write `data`; an SFTP error becomes an OSError that says what failed."""
        return self._do("write", "write", data)

    def close(self) -> None:
        """Close the file; a write the server fails only now (a full disk) raises. A second close does nothing."""
        if self._closed:
            return
        try:
            # the server may report a write's failure as late as the close (a full disk)
            self._do("write (close)" if self.writable() else "close", "close")
        finally:
            self._closed = True  # a failed close is not tried again when the object goes
