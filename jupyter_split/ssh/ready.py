"""A channel to a session's socket opened ahead, for the next cell.

Opening an SSH channel costs a round trip (150 ms on a far link) before a byte can go on it, so
a cell that opened its channel first would wait two round trips for its first record. After a
cell takes the ready channel, the next one is opened in the background while the cell runs.

An open channel also says, with no round trip, that the session lives: its runner's socket
accepted it, and a runner that ends closes it (the channel then reads as at its end).
"""
from __future__ import annotations

import asyncio
from typing import Any

from .library import asyncssh


class ReadyChannel:
    """At most one unused channel to one unix socket on the site, over `link`'s connection."""

    def __init__(self, link: Any):
        self.link = link  # ssh.connection.Link: the site's interactive connection
        self._path: str | None = None
        self._found: tuple[asyncssh.SSHClientConnection, Any, Any] | None = None
        self._opening: asyncio.Task | None = None

    def ready(self, path: str) -> bool:
        """Whether an unused channel to `path` is open now, on the current connection."""
        found = self._found
        if found is None or self._path != path:
            return False
        conn, reader, writer = found
        return conn is self.link.conn and not conn.is_closed() and not writer.channel.is_closing() \
            and not reader.at_eof()

    def take(self, path: str) -> tuple[Any, Any] | None:
        """The open channel to `path` as (reader, writer), if one is ready (None: open one as usual);
        either way the next one starts opening in the background."""
        found = self._found if self.ready(path) else None
        self._drop(keep=found)
        self._open_next(path)
        return (found[1], found[2]) if found else None

    def _open_next(self, path: str) -> None:
        if self._opening is not None and not self._opening.done():
            if self._path == path:
                return
            self._opening.cancel()
        self._path = path
        self._opening = asyncio.ensure_future(self._open(path))

    async def _open(self, path: str) -> None:
        if not self.link.connected:
            return  # never a login in the background: the next cell connects, as it would anyway
        conn = self.link.conn
        try:
            reader, writer = await conn.open_unix_connection(path, encoding=None)
        except (asyncssh.Error, OSError):
            return  # the session is gone or the link is down: the next cell finds out as usual
        if self._path == path and self._found is None and conn is self.link.conn:
            self._found = (conn, reader, writer)
        else:
            writer.close()

    def _drop(self, keep: Any = None) -> None:
        found, self._found = self._found, None
        if found is not None and found is not keep:
            found[2].close()

    def close(self) -> None:
        """Close the unused channel and stop opening one."""
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        self._drop()
