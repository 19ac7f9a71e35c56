"""What the engine does on an SFTP server itself rather than through sshfs's sync API.

Between two countries a round trip takes 50 to 200 ms, so every one counts:
- Big files are written each on an SFTP session of the copy's own. SSH gives a
  session a flow-control window (OpenSSH's is 2 MB), and a session carries at most a
  window per round trip: 33 MB/s at 60 ms however fast the link (rsync over ssh has
  the same ceiling). sshfs opens every file on its least busy session but counts it
  busy only while it opens, so files written at once share one.
- Listing, creating folders and renaming go all at once, not one after another, and
  a rename is SFTP's posix-rename: fsspec's sync `mv` on sshfs copies the file with a
  remote `cp` command and deletes the original.
- Folders from the copy's root down are asked for in one go on one session, which
  answers in order: a whole tree in one round trip (asyncssh's makedirs stats its way
  down from `/`); staging is removed the same way, and a tree is listed a level at a time.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import posixpath
import threading
from typing import Any

from fsspec.asyn import sync

from . import sftp_errors

SESSIONS = 4
# A session that takes longer than this to open (a border-flaky stall is 5 s) is on a dead connection.
SESSION_OPEN = 30.0


class SftpStreams:
    """Up to SESSIONS SFTP sessions of a copy's own on `fs`'s connection (an sshfs filesystem)."""

    def __init__(self, fs: Any):
        self._fs = fs
        self._users: dict[Any, int] = {}  # session -> files open on it
        self._starting: list[concurrent.futures.Future] = []
        self._refused = False
        self._lock = threading.Lock()
        self.broken = False  # a write or a session start found the connection gone
        self.in_flight = 0  # pieces on their way on this connection (`width.Connections.turns` guards it)

    def open(self, path: str, offset: int = 0, *, read: bool = False) -> "SftpFile | None":
        """`path` open on the least busy session, a new one while any is shared: to read with
        `read`, else to write from `offset` (0: a new file); None when the server allows no
        session of our own (sshd's MaxSessions): the caller goes through sshfs instead."""
        session = self._take()
        if session is None:
            return None
        mode = "rb" if read else "r+b" if offset else "wb"
        try:
            handle = sync(self._fs.loop, _open, self._fs, session, path, mode)
        except BaseException as exc:
            self._release(session)
            if isinstance(exc, ConnectionError):
                self.broken = True
            raise
        return SftpFile(self, session, handle, path, writes=not read)

    def start_soon(self) -> None:
        """Open the sessions now, without waiting: a copy does it as its big files begin."""
        with self._lock:
            while len(self._users) + len(self._starting) < SESSIONS and not self._refused:
                self._starting.append(asyncio.run_coroutine_threadsafe(_new_session(self._fs), self._fs.loop))

    def close(self) -> None:
        """Close the copy's sessions, after waiting for the ones still opening; the connection stays."""
        with self._lock:
            opening = list(self._starting)
        concurrent.futures.wait(opening, timeout=SESSION_OPEN)  # without the lock, as in `_take`
        with self._lock:
            self._harvest()
            sessions, self._users = list(self._users), {}
        for session in sessions:
            try:
                self._fs.loop.call_soon_threadsafe(session.exit)
            except RuntimeError:
                pass  # the loop is gone already, and the sessions with it

    def _take(self) -> Any:
        """The least busy session, opening one while all are in use; None when there is none to
        be had. Raises ConnectionError when a session does not open within SESSION_OPEN seconds."""
        with self._lock:
            self._harvest()
            shared = not self._users or min(self._users.values()) > 0
            opening: list[concurrent.futures.Future] = []
            if shared and len(self._users) < SESSIONS and not self._refused:
                if not self._starting:
                    self._starting.append(asyncio.run_coroutine_threadsafe(_new_session(self._fs), self._fs.loop))
                opening = list(self._starting)
        if opening:
            # waited for without the lock: a piece's end (on the event loop's thread) may need it
            done, _ = concurrent.futures.wait(opening, timeout=SESSION_OPEN, return_when=concurrent.futures.FIRST_COMPLETED)
            if not done:
                self.broken = True  # an answer that does not come: the connection is gone unnoticed
        with self._lock:
            self._harvest()
            if not self._users:
                if self.broken:
                    raise ConnectionError("no SFTP session to be had: the connection is gone")
                return None
            session = min(self._users, key=self._users.__getitem__)
            self._users[session] += 1
            return session

    def _harvest(self) -> None:
        # sessions that finished opening join the pool; a refusal is the server's limit on
        # sessions (sshd's MaxSessions): share the ones there are
        import asyncssh

        for starting in [f for f in self._starting if f.done()]:
            self._starting.remove(starting)
            try:
                self._users[starting.result()] = 0
            except asyncssh.ChannelOpenError:
                if self.closed:  # not the server's limit: the link dropped
                    self.broken = True
                else:
                    self._refused = True
            except (OSError, asyncssh.Error):
                self.broken = True  # the connection is unusable: the pool opens another

    @property
    def busy(self) -> int:
        """Files open on this connection's sessions now."""
        with self._lock:
            return sum(self._users.values())

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (a dropped link): its sessions are dead."""
        is_closed = getattr(getattr(self._fs, "client", None), "is_closed", None)
        return self.broken or bool(is_closed and is_closed())

    def _release(self, session: Any) -> None:
        with self._lock:
            if session in self._users:
                self._users[session] -= 1


class SftpFile:
    """A file open on one session, read or written a piece at a time at any offset
    (`ranges.Ranged` deals a file's pieces over the files of several connections)."""

    def __init__(self, streams: SftpStreams, session: Any, handle: Any, path: str, writes: bool):
        self.streams, self._session, self._handle, self._path = streams, session, handle, path
        self._fs, self._writes = streams._fs, writes
        self._closed = False

    def write_at(self, data: bytes, offset: int) -> concurrent.futures.Future:
        """Send `data` to `offset` of the file; the future ends when the server confirmed it.

        Do not change `data` meanwhile."""
        call = _call(self._fs, "write", self._path, self._handle.write, data, offset, writes=True)
        return asyncio.run_coroutine_threadsafe(call, self._fs.loop)

    def read_at(self, size: int, offset: int) -> concurrent.futures.Future:
        """The future of up to `size` bytes from `offset` (fewer at the end of the file)."""
        call = _call(self._fs, "read", self._path, self._handle.read, size, offset)
        return asyncio.run_coroutine_threadsafe(call, self._fs.loop)

    def close_soon(self) -> concurrent.futures.Future:
        """Close the file once its pieces ended; the future fails with a failure the server
        reports only at the close (a full disk)."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        if self._closed:
            done.set_result(None)
            return done
        self._closed = True
        # the session is free for other files now, not when the close is answered: that answer
        # comes on the event loop's thread, which must never wait for the pool's lock (a thread
        # holding it may be waiting on the loop for a session to open)
        self.streams._release(self._session)
        op = "write (close)" if self._writes else "read (close)"
        try:
            return asyncio.run_coroutine_threadsafe(
                _call(self._fs, op, self._path, self._handle.close, writes=self._writes), self._fs.loop)
        except RuntimeError as exc:  # the loop is gone, and the session with it
            done.set_exception(ConnectionError(f"{self._path}: the connection is gone ({exc})"))
            return done

    def close(self) -> None:
        """`close_soon`, waited for; its failure raised."""
        self.close_soon().result()


def is_sshfs(fs: Any) -> bool:
    """An sshfs filesystem: these helpers lean on its connection (`client`) and session pool (`_pool`)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in ("ssh", "sftp") for p in protocols) and hasattr(fs, "client") and hasattr(fs, "_pool")


def find(fs: Any, root: str) -> dict[str, dict[str, Any]]:
    """path -> info of every file under `root`, one round trip per level of folders."""
    return sync(fs.loop, _find, fs, root)


def make_dirs(fs: Any, folders: list[str], base: str) -> None:
    """Create each folder and its missing parents, where `base`'s parent exists.

    Every folder from `base` down is asked for at once on one session, parents first:
    the server answers requests in order, so the whole tree costs one round trip. If
    that fails (the server reorders, or `base`'s parent is missing too) each folder is
    made from its deepest existing parent down.
    """
    sync(fs.loop, _make_dirs, fs, sorted(set(folders)), base.rstrip("/"))


async def _make_dirs(fs: Any, folders: list[str], base: str) -> None:
    chain: dict[str, None] = {}
    for folder in folders:
        parts, path = [], folder
        while path.startswith(base + "/") or path == base:
            parts.append(path)
            path = posixpath.dirname(path)
        chain.update(dict.fromkeys(reversed(parts or [folder])))
    async with fs._pool.get() as channel:
        results = await asyncio.gather(*(_call(fs, "create the folder", path, channel.mkdir, path) for path in chain),
                                       return_exceptions=True)
    for result in results:
        if isinstance(result, PermissionError):
            raise result
        if isinstance(result, FileNotFoundError):
            await _gather([_make_dir(fs, folder) for folder in folders])
            return


async def read_file(fs: Any, path: str) -> bytes:
    """A whole file, on one of sshfs's pooled sessions (many at once pipeline there)."""
    async with fs._pool.get() as channel:
        return await _call(fs, "read", path, _read_whole, channel, path)


async def write_file(fs: Any, path: str, data: bytes) -> None:
    """A whole file, written on one of sshfs's pooled sessions into an existing folder.

    sshfs's pipe_file first re-creates the parent folder, a round trip per file that
    nearly tripled the time for small files; a copy creates every folder once.
    """
    async with fs._pool.get() as channel:
        await _call(fs, "write", path, _write_whole, channel, path, data, writes=True)


def rename_all(fs: Any, moves: list[tuple[str, str]]) -> None:
    """Rename each (old, new), replacing `new` atomically (posix-rename), all at once."""
    sync(fs.loop, _gather, [fs._mv(old, new) for old, new in moves])


async def _find(fs: Any, root: str) -> dict[str, dict[str, Any]]:
    return (await _levels(fs, root))[1]


async def _levels(fs: Any, root: str) -> tuple[list[list[str]], dict[str, dict[str, Any]]]:
    """The folders under `root` (itself first) by depth, and path -> info of every file."""
    folders: list[list[str]] = []
    files: dict[str, dict[str, Any]] = {}
    level = [root]
    while level:
        folders.append(level)
        listings = await _gather([fs._ls(folder, detail=True) for folder in level])
        level = []
        for listing in listings:
            for info in listing:
                if info["type"] == "directory":
                    level.append(info["name"])
                else:
                    files[info["name"]] = info
    return folders, files


async def _make_dir(fs: Any, path: str) -> None:
    # mkdir first: a new folder whose parent exists costs one round trip
    async with fs._pool.get() as channel:
        try:
            await _call(fs, "create the folder", path, channel.mkdir, path)
            return
        except FileNotFoundError:
            pass  # its parent is missing too
        except OSError:
            if await _call(fs, "stat", path, channel.isdir, path):  # it was there already
                return
            raise
    parent = posixpath.dirname(path)
    if parent == path:
        raise FileNotFoundError(errno.ENOENT, f"cannot create {path}")
    await _make_dir(fs, parent)
    await _make_dir(fs, path)


def remove_tree(fs: Any, root: str, empty: list[str] | None = None) -> None:
    """Delete `root` and everything under it, if it exists: a level of folders at a time.

    `empty`: folders under `root` believed to hold nothing else; they are removed without
    listing anything (listing one folder takes SFTP four round trips), and the tree is
    listed only if that fails.
    """
    sync(fs.loop, _remove_tree, fs, root, empty)


async def _remove_tree(fs: Any, root: str, empty: list[str] | None) -> None:
    if empty is not None:
        folders = {root}
        for folder in empty:
            while folder.startswith(root + "/") and folder not in folders:
                folders.add(folder)
                folder = posixpath.dirname(folder)
        deepest_first = sorted(folders, key=lambda f: f.count("/"), reverse=True)
        async with fs._pool.get() as channel:  # in order on one session: one round trip
            results = await asyncio.gather(*(_call(fs, "remove the folder", f, channel.rmdir, f) for f in deepest_first),
                                           return_exceptions=True)
        if not any(isinstance(result, BaseException) for result in results):
            return
        # something else is in there (or the server reordered): list it all
    try:
        levels, files = await _levels(fs, root)
    except FileNotFoundError:
        return
    await _gather([fs._rm_file(path) for path in files])
    for level in reversed(levels):
        await _gather([_rmdir(fs, folder) for folder in level])


async def _rmdir(fs: Any, path: str) -> None:
    async with fs._pool.get() as channel:
        await _call(fs, "remove the folder", path, channel.rmdir, path)


async def _gather(calls: list[Any], limit: int = 256) -> list[Any]:
    """Every call's result, at most `limit` at a time; the first failure raised after all end."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    results = await asyncio.gather(*(one(call) for call in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _new_session(fs: Any) -> Any:
    return await fs.client.start_sftp_client()


async def _open(fs: Any, session: Any, path: str, mode: str) -> Any:
    return await _call(fs, f"open ({mode})", path, session.open, path, mode, block_size=-1, max_requests=-1)


async def _read_whole(channel: Any, path: str) -> bytes:
    async with channel.open(path, "rb") as handle:
        return await handle.read()


async def _write_whole(channel: Any, path: str, data: bytes) -> None:
    async with channel.open(path, "wb") as handle:
        await handle.write(data)


async def _call(fs: Any, op: str, path: str, fn: Any, *args: Any, writes: bool = False, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, its SFTP errors raised as OSErrors that say `op`, `path`, the server and the fix,
    of the types the engine tells apart (permanent or worth a retry); see `sftp_errors.explain`."""
    # asyncssh is imported here, not at the top: a runner on a site may have no `ssh` extra
    import asyncssh

    try:
        return await fn(*args, **kwargs)
    except asyncssh.SFTPError as exc:
        raise await sftp_errors.explain(fs, exc, op, path, writes=writes) from exc
