"""Two SSH connections per site (asyncssh): an interactive one and, opened on first use, a bulk one.

Live output, cell requests, interrupts and small reads share one TCP flow with whatever else
the connection carries: behind a megabyte of checkpoint or variable on a long link (one flow
moves a few MB/s), an interrupt waits seconds. So transfers larger than `BULK_BYTES` (and
every whole-file upload or download) go on a second connection, a flow of its own, that the
interactive traffic never queues behind. Both are logged in by `login` (host keys always
checked), each through its own hop to the jump host, and each reconnects on its next use
after a drop. Remote commands are argv lists joined with `shlex.join`, never strings built by
hand. SFTP requests are sized from the server's own limits and pipelined, which keeps a long
link full; writes are atomic.
"""
from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
import shlex
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from .library import asyncssh

from ..config import Config, SiteConfig
from .login import Endpoint, HostKeyError, LinkError, SshError, endpoint_of, jump_endpoint, open_connection
from .ready import ReadyChannel

#: Transfers above this go on the bulk connection. A MiB is a quarter of a second on one border
#: flow (4 MB/s): anything longer holds live output and interrupts back where a person notices,
#: while smaller transfers (event-log chunks, request files) are not worth a second login.
BULK_BYTES = 1 << 20


@dataclass
class Completed:
    """What a command run on the site returned: its exit status and raw output."""

    returncode: int
    stdout: bytes
    stderr: bytes

    def text(self) -> str:
        """stdout as text; bytes that are not UTF-8 are replaced, never raised."""
        return self.stdout.decode(errors="replace")


class Link:
    """One SSH connection to the site (through its own connection to the jump host, if any),
    opened on first use and again after it dropped; `role` names it in messages."""

    def __init__(self, endpoint: Endpoint, jump: Endpoint | None, role: str):
        self.endpoint, self.jump, self.role = endpoint, jump, role
        self.conn: asyncssh.SSHClientConnection | None = None
        self.bastion: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self.opened = self.failed = 0.0  # the loop's clock when the connection was made; when one last failed

    @property
    def connected(self) -> bool:
        """Whether the connection is open now (no reconnect is tried)."""
        return self.conn is not None and not self.conn.is_closed()

    @property
    def fresh(self) -> bool:
        """Whether the connection is open and was made since the last failure seen on this link."""
        return self.connected and self.opened > self.failed

    def failing(self) -> None:
        """A use of the connection failed (dropped, or no answer): it is not to be trusted any more."""
        self.failed = asyncio.get_running_loop().time()

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The open connection; connects (host key checked) if there is none."""
        async with self._lock:
            if not self.connected:
                self.drop()
                if self.jump is not None:
                    self.bastion = await open_connection(self.jump)
                self.conn = await open_connection(self.endpoint, self.bastion)
                self.opened = asyncio.get_running_loop().time()
            assert self.conn is not None
            return self.conn

    async def sftp(self) -> asyncssh.SFTPClient:
        """The SFTP client of the current connection, started again after a reconnect."""
        conn = await self.connection()
        if self._sftp is None or self._sftp_conn is not conn:
            self._sftp = await conn.start_sftp_client()
            self._sftp_conn = conn
        return self._sftp

    def lost(self) -> None:
        """The SFTP session failed: the next use starts another (on a new connection if this one died)."""
        self._sftp = None
        self.failing()

    def drop(self) -> None:
        """Abort the connection at once; the next use connects again."""
        for conn in (self.conn, self.bastion):
            if conn is not None:
                conn.abort()
        self.conn = self.bastion = None
        self._sftp = None

    async def close(self) -> None:
        """Close the connection and its jump host cleanly."""
        async with self._lock:
            for conn in (self.conn, self.bastion):
                if conn is not None:
                    conn.close()
                    await conn.wait_closed()
            self.conn = self.bastion = None
            self._sftp = None


class SiteConnection:
    """The site's connections: `interactive` (commands, the live channel, small reads and writes) and
    `bulk` (transfers above BULK_BYTES, uploads, downloads), each reconnecting on demand."""

    def __init__(self, site: SiteConfig, config: Config | None = None):
        self.site = site
        self.endpoint = endpoint_of(site)
        self.jump = jump_endpoint(site, config)
        self.interactive = Link(self.endpoint, self.jump, "interactive")
        self.bulk = Link(self.endpoint, self.jump, "bulk")
        self.ready = ReadyChannel(self.interactive)  # the next cell's channel to the session

    def _link(self, bulk: bool) -> Link:
        return self.bulk if bulk else self.interactive

    @property
    def connected(self) -> bool:
        """Whether the interactive connection is open now (no reconnect is tried)."""
        return self.interactive.connected

    async def connection(self, bulk: bool = False) -> asyncssh.SSHClientConnection:
        """The open interactive (or bulk) connection, through the jump host when there is one; connects
        once if needed.

        Raises HostKeyError for a key not on record, SshError for a refused login, LinkError
        when the network fails (worth a retry).
        """
        return await self._link(bulk).connection()

    async def reconnect(self, attempts: int = 8, first_delay: float = 0.25, max_delay: float = 10.0,
                        bulk: bool = False, keep_fresh: bool = False) -> None:
        """Drop the interactive (or bulk) connection and connect again, doubling the wait after each
        failure; with `keep_fresh`, one made since the last failure seen on it is kept (it is what a
        reconnect would give).
        The other connection is left alone: a transfer on it goes on if it still can, and one that
        dropped connects again on its next use."""
        link, delay = self._link(bulk), first_delay
        if keep_fresh and link.fresh:
            return
        link.drop()
        for attempt in range(attempts):
            try:
                await link.connection()
                return
            except HostKeyError:
                raise
            except SshError:
                if attempt == attempts - 1:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)

    async def close(self) -> None:
        """Close both connections and their jump hosts cleanly; the next call connects again."""
        self.ready.close()
        await self.interactive.close()
        await self.bulk.close()

    async def run(self, argv: list[str], input: bytes | None = None, timeout: float | None = None,
                  env: dict[str, str] | None = None, cwd: str | None = None) -> Completed:
        """Run `argv` on the site (quoted with shlex.join); never raises on a nonzero exit.

        `env` is for values that may be seen (it lands on the remote command line); secrets go in `input`.
        """
        conn = await self.connection()
        if env:
            # Through `env(1)`, so no value is re-parsed by the remote shell. env reads every
            # word with a `=` as an assignment until the command, so a command path with one
            # (a workdir like `/data/run=3`) is handed over as a shell's positional parameter.
            shim = ["sh", "-c", 'exec "$@"', "sh"] if "=" in argv[0] else []
            argv = ["env", *(f"{k}={v}" for k, v in env.items()), *shim, *argv]
        if cwd:
            # The folder arrives as a positional parameter: it is never parsed as shell text.
            argv = ["sh", "-c", 'cd -- "$1" && shift && exec "$@"', "sh", cwd, *argv]
        command = shlex.join(argv)
        try:
            done = await conn.run(command, input=input, encoding=None, timeout=timeout, check=False)
        except asyncssh.TimeoutError:
            raise SshError(f"site {self.site.name!r}: `{shlex.join(argv[:3])} ...` took over {timeout:g} s") from None
        except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
            self.interactive.failing()
            raise LinkError(f"site {self.site.name!r}: the connection failed while running {argv[0]!r}: {exc}") from None
        return Completed(done.exit_status if done.exit_status is not None else -1,
                         done.stdout or b"", done.stderr or b"")

    async def check(self, argv: list[str], what: str, **kwargs: Any) -> Completed:
        """Like `run`, but a nonzero exit raises SshError naming `what` and the end of stderr."""
        done = await self.run(argv, **kwargs)
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip()[-2000:]
            raise SshError(f"site {self.site.name!r}: {what} failed (exit {done.returncode}): {err}")
        return done

    async def sftp(self, bulk: bool = False) -> asyncssh.SFTPClient:
        """The SFTP client of the interactive (or bulk) connection, started again after a reconnect."""
        return await self._link(bulk).sftp()

    def _lost(self, link: Link, exc: BaseException, what: str) -> LinkError:
        link.lost()
        return LinkError(f"site {self.site.name!r}: the {link.role} connection dropped while {what}: {exc}")

    async def read_file(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        """The file's bytes from `offset` (below 0: from its end), at most `size` (None: to the end).
        More than BULK_BYTES come over the bulk connection.

        Raises FileNotFoundError for a missing file and LinkError when the connection drops.
        """
        link = self._link(size is not None and size > BULK_BYTES)
        sftp = await link.sftp()
        try:
            async with _reading(sftp, path) as f:
                if offset < 0 or size is None:
                    # asyncssh asks for the size of a read to the end anyway: asked here, it also picks the path
                    end = (await f.stat()).size or 0
                    offset = max(0, end + offset) if offset < 0 else offset
                    size = max(0, end - offset) if size is None else size
                if size <= BULK_BYTES or link is self.bulk:
                    return await f.read(size, offset)
            link = self.bulk
            async with _reading(await link.sftp(), path) as f:
                return await f.read(size, offset)
        except asyncssh.SFTPNoSuchFile:
            raise FileNotFoundError(f"{path} on site {self.site.name!r}") from None
        except LOST as exc:
            raise self._lost(link, exc, f"reading {path}") from None

    async def read_pseudo(self, path: str, limit: int = 1 << 16) -> bytes:
        """Read a file that reports size 0 (/proc): one request of `limit` bytes, no extra process."""
        sftp = await self.sftp()
        try:
            async with _reading(sftp, path) as f:
                return await f.read(limit)
        except asyncssh.SFTPNoSuchFile:
            raise FileNotFoundError(f"{path} on site {self.site.name!r}") from None
        except LOST as exc:
            raise self._lost(self.interactive, exc, f"reading {path}") from None

    async def write_file(self, path: str, data: bytes) -> None:
        """Write atomically: a temporary name in the same folder, then an OpenSSH posix-rename.
        More than BULK_BYTES go over the bulk connection."""
        link = self._link(len(data) > BULK_BYTES)
        sftp = await link.sftp()
        folder = posixpath.dirname(path)
        temp = f"{path}.part-{secrets.token_hex(4)}"
        try:
            if folder:
                await make_folder(sftp, folder)
            async with sftp.open(temp, "wb") as f:
                await f.write(data)
            await sftp.posix_rename(temp, path)
        except LOST as exc:
            raise self._lost(link, exc, f"writing {path}") from None
        except BaseException:
            try:
                await sftp.remove(temp)
            except (asyncssh.Error, OSError):
                pass
            raise

    async def put(self, local: str | Path, remote: str) -> None:
        """Upload a local file to `remote` over SFTP on the bulk connection, as is: not atomic, and
        asyncssh's errors pass through."""
        sftp = await self.sftp(bulk=True)
        await sftp.put(str(local), remote)

    async def get(self, remote: str, local: str | Path) -> None:
        """Download `remote` to a local file over SFTP on the bulk connection; asyncssh's errors pass through."""
        sftp = await self.sftp(bulk=True)
        await sftp.get(remote, str(local))

    async def can_forward_unix(self, python: str, folder: str) -> bool:
        """Whether the site's sshd lets this connection reach unix sockets (the runner's live channel).

        sshd answers "open failed" both for a missing socket and for forwarding turned off
        (AllowStreamLocalForwarding no, DisableForwarding yes), so a real listener is made
        in `folder` for a moment and reached for.
        """
        conn = await self.connection()
        path = posixpath.join(folder, f"probe-{secrets.token_hex(4)}")
        process = await conn.create_process(shlex.join([python, "-c", _LISTEN, path]), encoding=None)
        try:
            if not (await asyncio.wait_for(process.stdout.readline(), self.endpoint.connect_timeout * 4)).strip():
                raise SshError(f"site {self.site.name!r}: cannot make a unix socket in {folder} with {python}: "
                               f"{(await process.stderr.read()).decode(errors='replace')[-500:]}")
            try:
                _, writer = await conn.open_unix_connection(path)
            except asyncssh.ChannelOpenError:
                return False
            writer.close()
            return True
        finally:
            process.stdin.write_eof()
            process.close()

    async def open_unix(self, path: str, bulk: bool = False, window: int | None = None,
                        ) -> tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]:
        """A byte stream to a unix socket on the site (direct-streamlocal over the interactive
        connection, or the bulk one); `window` caps the bytes the site may send ahead of our reads."""
        conn = await self.connection(bulk)
        try:
            return await conn.open_unix_connection(path, encoding=None, **({"window": window} if window else {}))
        except asyncssh.ChannelOpenError as exc:
            # Refused, not fatal: a runner that is still starting has no socket yet.
            raise ConnectionRefusedError(
                f"site {self.site.name!r}: cannot reach the runner socket {path}: {exc.reason}. The runner may "
                "have exited (see its events), or the site's sshd forbids AllowStreamLocalForwarding.") from None
        except (asyncssh.DisconnectError, OSError) as exc:
            self._link(bulk).failing()
            raise LinkError(f"site {self.site.name!r}: the connection failed opening {path}: {exc}") from None


# Listens on argv[1] until stdin ends, then removes it. It never accepts: the kernel completes a
# connect into the backlog, and closing the listener early would turn that success into a failure.
_LISTEN = r"""
import os, socket, sys
path = sys.argv[1]
os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(4)
try:
    print("ready", flush=True)
    sys.stdin.buffer.read()
finally:
    os.unlink(path)
"""

@contextlib.asynccontextmanager
async def _reading(sftp: asyncssh.SFTPClient, path: str) -> AsyncIterator[asyncssh.SFTPClientFile]:
    """`path` open for reading. It is closed in the background: the reader has its bytes, and waiting
    for the server's word on closing a handle only read from costs a round trip (150 ms on a far
    link) on every poll of a log and every check that a runner lives."""
    f = await sftp.open(path, "rb")
    try:
        yield f
    finally:
        task = asyncio.ensure_future(f.close())
        _CLOSING.add(task)
        task.add_done_callback(_closed)


_CLOSING: set[asyncio.Future] = set()  # closes under way: the loop keeps only a weak reference to a task


async def make_folder(sftp: asyncssh.SFTPClient, folder: str) -> None:
    """Make `folder` and its missing parents. A new run's folder, whose parent is there, costs one
    round trip: asyncssh's makedirs asks about every folder from the root down first (one round
    trip each, seven for a run's folder, a second on a far link)."""
    try:
        await sftp.mkdir(folder)
    except asyncssh.SFTPNoSuchFile:
        await sftp.makedirs(folder, exist_ok=True)  # a parent is missing too
    except asyncssh.SFTPError:
        if not await sftp.isdir(folder):  # an SFTP server says only "failure" for a folder already there
            raise


def _closed(task: asyncio.Future) -> None:
    _CLOSING.discard(task)
    if not task.cancelled():
        task.exception()  # a close on a connection that dropped meanwhile fails, and that is fine


#: what a dropped connection raises on its way
LOST = (asyncssh.SFTPConnectionLost, asyncssh.DisconnectError, ConnectionError, BrokenPipeError)

# One connection per site and event loop: asyncssh objects belong to the loop that made them.
_POOL: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, Endpoint], SiteConnection]]" = weakref.WeakKeyDictionary()


def connection_for(site: SiteConfig, config: Config | None = None) -> SiteConnection:
    """The shared connection to `site` for the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    per_loop = _POOL.setdefault(loop, {})
    key = (site.name, endpoint_of(site))
    found = per_loop.get(key)
    if found is None or found.jump != jump_endpoint(site, config):
        found = per_loop[key] = SiteConnection(site, config)
    return found
