"""A copy's own SFTP sessions on one SSH connection, and files open on them read or written a piece at
a time at any offset (`ranges.py` deals a big file's pieces over several connections' files)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from fsspec.asyn import sync

from .sftp_errors import call

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
        from ..ssh.library import asyncssh

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
    def ready(self) -> bool:
        """Whether a session is open: a file opens on it in one round trip."""
        with self._lock:
            self._harvest()
            return bool(self._users)

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
        request = call(self._fs, "write", self._path, self._handle.write, data, offset, writes=True)
        return asyncio.run_coroutine_threadsafe(request, self._fs.loop)

    def read_at(self, size: int, offset: int) -> concurrent.futures.Future:
        """The future of up to `size` bytes from `offset` (fewer at the end of the file)."""
        request = call(self._fs, "read", self._path, self._handle.read, size, offset)
        return asyncio.run_coroutine_threadsafe(request, self._fs.loop)

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
                call(self._fs, op, self._path, self._handle.close, writes=self._writes), self._fs.loop)
        except RuntimeError as exc:  # the loop is gone, and the session with it
            done.set_exception(ConnectionError(f"{self._path}: the connection is gone ({exc})"))
            return done

    def close(self) -> None:
        """`close_soon`, waited for; its failure raised."""
        self.close_soon().result()


async def _new_session(fs: Any) -> Any:
    return await fs.client.start_sftp_client()


async def _open(fs: Any, session: Any, path: str, mode: str) -> Any:
    return await call(fs, f"open ({mode})", path, session.open, path, mode, block_size=-1, max_requests=-1)
