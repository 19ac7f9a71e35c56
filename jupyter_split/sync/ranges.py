"""One file moved to or from an SFTP server in pieces dealt across the copy's connections.

The one wide copy, both ways: `Ranged` deals a file's pieces, in file order, each to the lane
(the file open on one connection) whose connection has the fewest pieces in flight; lanes
join whenever other connections of the pool are open, up to the width, so a big file never rides
one flow: their opens go out at once, and each lane takes pieces once it is open. `RangedWriter`
sends the pieces of a source read once, in order, and hashed; `RangedReader` asks for them ahead
and hands them back in order, for the same hashing.
"""
from __future__ import annotations

import concurrent.futures
import time
from collections import deque
from typing import Any

from .arrived import Arrived
from .sftp_files import SftpFile
from .width import CONNECTION_PENDING, FILE_PENDING, Connections


class Ranged:
    """The pieces of one file in flight over several lanes; `_landed` takes each finished one in order."""

    def __init__(self, pool: Connections, path: str, offset: int, first: SftpFile):
        self._pool, self._path = pool, path
        self._lanes: list[SftpFile] = [first]
        self._joining: list[tuple[Any, concurrent.futures.Future]] = []  # (connection, its lane opening)
        self._sessionless: set[Any] = set()  # connections that had no session to open the file on
        self._flight: deque[tuple[concurrent.futures.Future, int, int, SftpFile]] = deque()  # (piece, start, end, lane)
        self._offset = self._acked = offset
        self._closed = False

    def _open_lanes(self, avoid: tuple[Any, ...], count: int) -> list[tuple[Any, concurrent.futures.Future]]:
        raise NotImplementedError

    def _landed(self, result: Any) -> None:
        """The oldest piece in flight finished with `result`."""

    def _lane(self, wait: bool) -> SftpFile | None:
        """The lane for the next piece, its connection's room taken: the one whose connection has
        the fewest in flight. Waits while every lane's connection has CONNECTION_PENDING, or the
        file FILE_PENDING; without `wait`, None then. An earlier failure is raised here."""
        pool = self._pool
        while True:
            self._add_lanes()
            with pool.turns:
                self._reap()
                lane = min(self._lanes, key=lambda f: f.streams.in_flight)
                if lane.streams.in_flight < CONNECTION_PENDING and len(self._flight) < FILE_PENDING:
                    lane.streams.in_flight += 1
                    return lane
                if not wait:
                    return None
                pool.turns.wait(0.25)  # a piece ends, or another connection may have opened

    def _issue(self, lane: SftpFile, piece: concurrent.futures.Future, size: int) -> None:
        issued = time.monotonic()
        piece.add_done_callback(lambda done: self._pool.ended(lane.streams, done, size, time.monotonic() - issued))
        self._flight.append((piece, self._offset, self._offset + size, lane))
        self._offset += size

    def _reap(self) -> None:
        # the pieces done from the front on; the first failure is raised
        while self._flight and self._flight[0][0].done():
            piece, _, end, _ = self._flight[0]
            self._landed(piece.result())
            self._flight.popleft()
            self._acked = end
        for piece, _, _, _ in self._flight:
            if piece.done() and piece.exception() is not None:
                raise piece.exception()

    def _add_lanes(self) -> None:
        # every connection open now that the file is not on yet, up to the width, joins: their opens go
        # out at once (one round trip for all; a lane at a time took one each, 2.4 s for 16 lanes at
        # 150 ms), and the pieces keep going out on the lanes there are meanwhile (a fresh connection's
        # first open waits for its sessions: the first pieces of a copy waited 1.1 s for them)
        for joining in [j for j in self._joining if j[1].done()]:
            self._joining.remove(joining)
            try:
                lane = joining[1].result()
            except Exception:  # noqa: BLE001  (that connection is left out: its open marked it broken)
                continue
            if lane is not None:
                self._lanes.append(lane)
            else:  # (the server allows no session of ours there: not asked again for this file)
                self._sessionless.add(joining[0])
        missing = self._pool.width.target - len(self._lanes) - len(self._joining)
        if missing > 0:
            avoid = (tuple(lane.streams for lane in self._lanes) + tuple(streams for streams, _ in self._joining)
                     + tuple(self._sessionless))
            opening = self._open_lanes(avoid, missing)
            for _, future in opening:
                future.add_done_callback(self._opened)
            self._joining += opening

    def _opened(self, _: concurrent.futures.Future) -> None:
        with self._pool.turns:  # a writer waiting for room may go on the new lane
            self._pool.turns.notify_all()

    def _close_lanes(self, wait: bool) -> None:
        # every lane's close at once (one round trip, not one per lane); with `wait` the first failure is raised
        for _, future in self._joining:  # no piece went there: closed once open, not waited for
            if not future.cancel():
                future.add_done_callback(_close_opened)
        self._joining.clear()
        closes = [lane.close_soon() for lane in self._lanes]
        if not wait:
            return
        errors = [exc for exc in (c.exception() for c in closes) if exc is not None]
        if errors:
            raise errors[0]


def _close_opened(future: concurrent.futures.Future) -> None:
    if future.exception() is None and future.result() is not None:
        future.result().close_soon()


class RangedWriter(Ranged):
    """A file written in pieces dealt across connections, each to its offset.

    The data comes in file order (the source is read once, in order, and hashed). `acked`: the
    end of the bytes the server confirmed, every byte before it included, so a resend after a
    dropped link starts there.
    """

    @property
    def acked(self) -> int:
        """The end of the bytes the server confirmed, every one before it included."""
        acked = self._acked
        for piece, _, end, _ in self._flight:  # in file order
            if not piece.done() or piece.exception() is not None:
                break
            acked = end
        return acked

    def write(self, data: bytes) -> None:
        """Send `data` from the next offset, a piece at a time (`Width.piece`); waits for room (see `_lane`).
        Do not change `data` meanwhile. An earlier failure is raised here."""
        size = self._pool.width.piece  # one size for this chunk's pieces (it follows the link)
        view = memoryview(data) if len(data) > size else None  # pieces without copies
        for start in range(0, len(data), size):
            piece = data if view is None else view[start:start + size]
            lane = self._lane(wait=True)
            self._issue(lane, lane.write_at(piece, self._offset), len(piece))

    def close(self) -> None:
        """Wait for every piece, then close the file on every lane; raises the first failure."""
        if self._closed:
            return
        self._closed = True
        try:
            while self._flight:
                self._flight[0][0].result()
                self._acked = self._flight.popleft()[2]
        finally:
            self._flight.clear()
            self._close_lanes(wait=True)

    def _open_lanes(self, avoid: tuple[Any, ...], count: int) -> list[tuple[Any, concurrent.futures.Future]]:
        # at an offset: opened "r+b", not truncated
        return self._pool.open_soon(self._path, max(1, self._offset), avoid, count)


class RangedReader(Ranged):
    """A file read in pieces asked for ahead across connections, handed back in order by `read`.

    It reads `size` bytes from `offset`, and one past them: a file grown since it was listed
    then reads longer than its size, which the copy's size check refuses.
    """

    def __init__(self, pool: Connections, path: str, offset: int, size: int, first: SftpFile):
        super().__init__(pool, path, offset, first)
        self._end = size + 1
        self._ready = Arrived()

    def read(self, n: int = -1) -> bytes:
        """The next `n` bytes (all that is left with n < 0); fewer only at the end of the file."""
        want = self._end if n < 0 else n
        return self._gather(want, want)

    def read1(self, n: int) -> bytes:
        """Up to `n` bytes of what has arrived, waiting for one piece at most: a copy hands them on as
        they come, not once `n` is in (over a far link, seconds)."""
        return self._gather(n, min(n, self._pool.width.piece))

    def _gather(self, n: int, least: int) -> bytes:
        while self._ready.size < least and (self._flight or self._offset < self._end):
            self._ask(wait=not self._flight)
            if self._flight and self._ready.size < least:
                concurrent.futures.wait([self._flight[0][0]])
                with self._pool.turns:
                    self._reap()
        return self._ready.take(n)

    def _ask(self, wait: bool) -> None:
        # as many pieces as there is room for; with `wait`, at least one
        while self._offset < self._end:
            lane = self._lane(wait)
            if lane is None:
                return
            size = min(self._pool.width.piece, self._end - self._offset)
            self._issue(lane, lane.read_at(size, self._offset), size)
            wait = False

    def _landed(self, result: Any) -> None:
        self._ready.add(result)

    def close(self) -> None:
        """Close the file on every lane, without waiting: the reader has its bytes."""
        if not self._closed:
            self._closed = True
            self._close_lanes(wait=False)

    def __enter__(self) -> RangedReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _open_lanes(self, avoid: tuple[Any, ...], count: int) -> list[tuple[Any, concurrent.futures.Future]]:
        return self._pool.open_soon(self._path, 0, avoid, count, read=True)
