"""Big --in and --out payloads over several SSH connections of their own: a variable must not ride one flow.

A long lossy link gives each TCP flow only its share, and the bulk connection is one flow.
A payload above WIDE_BYTES goes as a file of the run directory instead (`in.pkl`, `out.pkl`),
in pieces of `sync.width.FAR_PIECE` dealt to the connection with the fewest in flight (at most
`CONNECTION_PENDING` each), as a checkpoint copy's big files are. The width adapts the same
way (`sync.width.Width`: it starts at 8 and doubles while each connection still adds its share,
up to `[sync] max_connections`), and the connections stay open for the next payload, as the
bulk one does. A piece whose connection drops goes again on another one; a file is written
under a temporary name and renamed, so a reader never finds it half written.
"""
from __future__ import annotations

import asyncio
import posixpath
import secrets
import time
from typing import Any, Awaitable, Callable, Iterable

from .library import asyncssh

from .connection import LOST, Link, LinkError, SiteConnection, make_folder
from .login import HostKeyError

WIDE_BYTES = 16 << 20  # payloads above this go over the wide path
FAR_RTT = 0.005  # seconds: a LAN answers in under a millisecond, a link between countries in 30 to 200
ATTEMPTS = 4           # a piece goes at most this many times (its connection dropped each time before)


class WidePath:
    """The site's connections for big payloads, opened as the width asks and kept between payloads."""

    def __init__(self, conn: SiteConnection, cap: int):
        from ..sync.width import CONNECTION_PENDING, FAR_PIECE, Width  # the sync engine's rule, loaded on first use

        self._conn = conn
        self.piece, self.pending = FAR_PIECE, CONNECTION_PENDING  # a far site's pieces (only far sites use this path)
        self._links: list[Link] = []
        self._opening: dict[Link, asyncio.Task] = {}
        self._rtt: float | None = None
        self.width = Width(cap)
        self.width.live = lambda: sum(1 for link in self._links if link.connected)

    async def far(self) -> bool:
        """Whether the site is far (a round trip of FAR_RTT or more, measured once on its open
        interactive connection): on a near one, one flow is not held to a share and the bulk
        connection's one stream is the faster way."""
        if self._rtt is None:
            started = time.monotonic()
            await (await self._conn.sftp()).stat("/")
            self._rtt = time.monotonic() - started
        return self._rtt >= FAR_RTT

    async def write(self, path: str, chunks: Iterable[memoryview], size: int,
                    on_bytes: Callable[[int], None] | None = None) -> None:
        """Write `size` bytes (`chunks`, in order) to `path` on the site, over the width; folders are made.
        `on_bytes(n)` as pieces land."""
        temp = f"{path}.part-{secrets.token_hex(4)}"
        first = await self._first()
        sftp = await first.sftp()
        await make_folder(sftp, posixpath.dirname(path))
        async with sftp.open(temp, "wb"):
            pass  # made empty here, each connection then writes its pieces at their offsets
        files: dict[Link, asyncssh.SFTPClientFile] = {}

        async def put(link: Link, offset: int, piece: memoryview) -> None:
            if link not in files:
                files[link] = await (await link.sftp()).open(temp, "r+b")
            await files[link].write(piece, offset)

        try:
            sent = await self._deal(self._pieces(chunks), put, on_bytes)
        except BaseException:
            await self._close(files)
            await _forget(sftp, temp)
            raise
        await self._close(files, strict=True)  # a write the server fails only now (a full disk) raises
        sftp = await (await self._first()).sftp()  # the first connection may be one that dropped
        if sent != size:
            await _forget(sftp, temp)
            raise ValueError(f"{path}: {sent} bytes came for a payload of {size}")
        try:
            await sftp.posix_rename(temp, path)
        except BaseException:
            await _forget(sftp, temp)
            raise

    async def read(self, path: str, size: int, on_bytes: Callable[[int], None] | None = None) -> bytearray:
        """The `size` bytes of `path` on the site, read over the width; FileNotFoundError if it is absent,
        OSError if it is shorter than `size`. `on_bytes(n)` as pieces land."""
        data = bytearray(size)
        view = memoryview(data)
        files: dict[Link, asyncssh.SFTPClientFile] = {}

        async def get(link: Link, offset: int, piece: memoryview) -> None:
            if link not in files:
                try:
                    files[link] = await (await link.sftp()).open(path, "rb")
                except asyncssh.SFTPNoSuchFile:
                    raise FileNotFoundError(f"{path} on site {self._conn.site.name!r}") from None
            got = await files[link].read(piece.nbytes, offset)
            if len(got) != piece.nbytes:
                raise OSError(f"{path} on site {self._conn.site.name!r} is shorter than its {size} bytes")
            piece[:] = got

        try:
            await self._deal(((start, view[start:start + self.piece]) for start in range(0, size, self.piece)), get,
                             on_bytes)
        finally:
            await self._close(files)
        return data

    async def close(self) -> None:
        """Close every connection of the path (the next payload opens them again)."""
        for task in self._opening.values():
            task.cancel()
        self._opening.clear()
        links, self._links = self._links, []
        for link in links:
            await link.close()

    def _pieces(self, chunks: Iterable[memoryview]) -> Iterable[tuple[int, memoryview]]:
        offset = 0
        for chunk in chunks:
            chunk = chunk.cast("B")
            for start in range(0, chunk.nbytes, self.piece):
                piece = chunk[start:start + self.piece]
                yield offset, piece
                offset += piece.nbytes

    async def _deal(self, pieces: Iterable[tuple[int, memoryview]],
                    move: Callable[[Link, int, memoryview], Awaitable[None]],
                    on_bytes: Callable[[int], None] | None) -> int:
        """Move every (offset, piece) (`move(link, offset, piece)`), each on the open connection with the
        fewest in flight; a piece whose connection failed goes again on another (ATTEMPTS at most).
        Returns the bytes moved."""
        flight: dict[asyncio.Task, tuple[Link, int, memoryview, int]] = {}
        load: dict[Link, int] = {}
        moved = 0

        def start(link: Link, at: int, piece: memoryview, attempt: int) -> None:
            load[link] = load.get(link, 0) + 1
            flight[asyncio.ensure_future(move(link, at, piece))] = (link, at, piece, attempt)

        async def settle(block: bool) -> None:
            if not flight:
                return
            done, _ = await asyncio.wait(flight, timeout=None if block else 0, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                link, at, piece, attempt = flight.pop(task)
                load[link] -= 1
                failure = task.exception()
                if failure is None:
                    self.width.sent(piece.nbytes)
                    if on_bytes is not None:
                        on_bytes(piece.nbytes)
                    continue
                if isinstance(failure, (FileNotFoundError, HostKeyError)) or not _dropped(failure) \
                        or attempt + 1 >= ATTEMPTS:
                    for other in flight:
                        other.cancel()
                    raise failure
                link.lost()
                link.drop()
                self.width.back_off()
                again = await self._lane(load)
                start(again, at, piece, attempt + 1)

        try:
            for at, piece in pieces:
                while True:
                    await settle(block=False)
                    link = await self._lane(load)
                    if load.get(link, 0) < self.pending:
                        break
                    await settle(block=True)
                start(link, at, piece, 0)
                moved += piece.nbytes
            while flight:
                await settle(block=True)
        finally:
            for task in flight:
                task.cancel()
        return moved

    async def _lane(self, load: dict[Link, int]) -> Link:
        """The open connection with the fewest pieces in flight, opening more toward the width."""
        self._grow()
        open_ = [link for link in self._links if link.connected and link not in self._opening]
        if not open_:
            return await self._first()
        return min(open_, key=lambda link: load.get(link, 0))

    async def _first(self) -> Link:
        """An open connection, waiting for one to open if none is (LinkError if none can)."""
        self._grow()
        for link in self._links:
            if link.connected and link not in self._opening:
                return link
        if not self._links:
            raise LinkError(f"site {self._conn.site.name!r}: no connection for a big payload")
        waiting = list(self._opening.values())
        errors: list[BaseException] = []
        for next_done in asyncio.as_completed(waiting):
            try:
                return await next_done
            except HostKeyError:
                raise
            except (asyncssh.Error, OSError, LinkError) as exc:
                errors.append(exc)
        raise LinkError(f"site {self._conn.site.name!r}: no connection for a big payload could be opened: "
                        f"{errors[0] if errors else 'none was asked for'}")

    def _grow(self) -> None:
        # open connections in the background up to the width; dead ones are dropped first
        self._links = [link for link in self._links if link.connected or link in self._opening]
        while len(self._links) < self.width.target:
            link = Link(self._conn.endpoint, self._conn.jump, f"wide {len(self._links) + 1}")
            self._links.append(link)
            task = asyncio.ensure_future(self._open(link))
            self._opening[link] = task

    async def _open(self, link: Link) -> Link:
        try:
            await link.sftp()
            return link
        except BaseException:
            if link in self._links:
                self._links.remove(link)
            self.width.back_off()  # the server or the link refuses more: stay narrower
            raise
        finally:
            self._opening.pop(link, None)

    @staticmethod
    async def _close(files: dict[Link, Any], strict: bool = False) -> None:
        closed = await asyncio.gather(*(f.close() for f in files.values()), return_exceptions=True)
        # (a connection that dropped had its pieces sent again on another: its close does not count)
        failures = [c for link, c in zip(files, closed) if isinstance(c, BaseException) and link.connected]
        if strict and failures:
            raise failures[0]


def _dropped(exc: BaseException) -> bool:
    """Whether `exc` says the connection went away (worth the piece going again on another)."""
    return isinstance(exc, (*LOST, asyncssh.ConnectionLost, asyncssh.ChannelOpenError, EOFError, TimeoutError))


async def _forget(sftp: asyncssh.SFTPClient, path: str) -> None:
    try:
        await sftp.remove(path)
    except (asyncssh.Error, OSError):
        pass
