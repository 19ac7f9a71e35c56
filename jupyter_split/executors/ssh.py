"""The ssh executor: runners on a remote machine, over the site's asyncssh connections.

The runner starts detached (its own session, output to a file in its run directory),
so it outlives the connection and the notebook. Secrets and the config reach it on the
SSH channel's stdin, through a small launcher that hands them to the runner's stdin:
never a command line, never a file. The live channel is the runner's unix socket,
reached by direct-streamlocal over the site's interactive connection (a warm cell on a channel opened
ahead for it, `ssh/ready.py`: one round trip to its first record); --in and --out payloads
and files above `BULK_BYTES` go on its bulk connection, so live output and interrupts never
queue behind them (`ssh/connection.py`), and payloads above `WIDE_BYTES` as files of the run
directory over several connections of their own (`ssh/wide.py`).
"""
from __future__ import annotations

import asyncio
import base64
import json
import posixpath
import time
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from ..ssh.library import asyncssh

from ..ssh import bootstrap
from ..config import Config, SiteConfig
from ..ssh.connection import BULK_BYTES, Link, LinkError, SiteConnection, SshError, connection_for
from ..ssh.wide import WIDE_BYTES, WidePath
from .. import protocol
from ..protocol import PROBE
from .base import RUNNER_MARKERS, Executor, ExecutorError, LaunchSpec

_SIGNALS = ("INT", "TERM", "KILL")
# The wide path of each shared connection (one per site and event loop, as the connection is).
_WIDE: "weakref.WeakKeyDictionary[SiteConnection, WidePath]" = weakref.WeakKeyDictionary()
# What the site may send of a `get`'s answer before its size is read on the interactive connection:
# an --out payload of up to BULK_BYTES arrives in one window, a larger one costs live output at most this.
_GET_WINDOW = BULK_BYTES + (4 << 10)
# Runs under the site's python: reads everything from stdin first (so no input is lost when
# the SSH session closes), then starts the runner in its own session and prints its pid.
_LAUNCH = r"""
import base64, json, os, subprocess, sys
job = json.loads(sys.stdin.buffer.read())
os.makedirs(job["run_dir"], exist_ok=True)
with open(os.path.join(job["run_dir"], "runner.log"), "ab") as log:
    child = subprocess.Popen(job["argv"], stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                             cwd=job["run_dir"], env={**os.environ, **job["env"]}, start_new_session=True)
print(json.dumps({"pid": child.pid}), flush=True)
child.stdin.write(base64.b64decode(job["stdin"]))
child.stdin.close()
"""


@contextmanager
def _link(link: Link) -> Iterator[None]:
    try:
        yield
    except (asyncssh.Error, OSError) as exc:
        link.failing()  # a reconnect asked for after this must not keep the connection
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            raise
        raise ConnectionResetError(f"the SSH link dropped: {exc}") from None


class _Channel:
    """A stream to the runner's socket, opened on first use on the connection its request suits, with
    link failures raised as ConnectionError, as callers expect of sockets.

    An --in payload (`put`) above BULK_BYTES goes on the bulk connection; a `get` starts on the
    interactive one, where the site may send at most _GET_WINDOW before the answer's size is read,
    and an answer larger than BULK_BYTES is asked for again on the bulk connection (the runner
    hands out an --out payload again from its run directory). Everything else is interactive.
    """

    def __init__(self, conn: SiteConnection, path: str):
        self._conn, self._path, self._on = conn, path, conn.interactive
        self._reader: asyncssh.SSHReader[bytes] | None = None
        self._writer: asyncssh.SSHWriter[bytes] | None = None
        self._pending: list[bytes | memoryview] = []
        self._get: bytes | None = None  # a `get` request whose answer's size is still to be read

    async def _open(self) -> None:
        if self._writer is not None:
            return
        first = self._pending[0] if self._pending else b""
        request = protocol.decode(bytes(first)) if bytes(first[-1:]) == b"\n" else {}
        bulk = request.get("op") == "put" and int(request.get("size", 0)) > BULK_BYTES
        if request.get("op") == "get":
            self._get = bytes(first)
        window = _GET_WINDOW if self._get else None
        # a cell takes the channel opened ahead for it (`ssh/ready.py`): its request goes out at once
        ready = self._conn.ready.take(self._path) if request.get("op") == "execute" else None
        self._reader, self._writer = ready or await self._conn.open_unix(self._path, bulk=bulk, window=window)
        self._on = self._conn.bulk if bulk else self._conn.interactive
        with _link(self._on):
            self._writer.writelines(self._pending)
        self._pending = []

    async def _answer(self) -> bytes:
        """The first line of the answer; a `get` larger than BULK_BYTES is asked again on the bulk connection."""
        assert self._reader is not None and self._writer is not None and self._get is not None
        request, self._get = self._get, None
        line = await self._reader.readline()
        answer = protocol.decode(line)
        if not answer.get("ok") or answer.get("file") or int(answer.get("size", 0)) <= BULK_BYTES:
            return line  # (an answer with a file is all there is: its bytes go over the wide path)
        self._writer.close()
        self._reader, self._writer = await self._conn.open_unix(self._path, bulk=True)
        self._on = self._conn.bulk
        self._writer.write(request)
        return await self._reader.readline()

    async def readline(self) -> bytes:
        await self._open()
        assert self._reader is not None
        with _link(self._on):
            return await (self._answer() if self._get else self._reader.readline())

    async def readexactly(self, n: int) -> bytes:
        await self._open()
        assert self._reader is not None
        with _link(self._on):
            return await self._reader.readexactly(n)

    async def read(self, n: int = -1) -> bytes:
        await self._open()
        assert self._reader is not None
        with _link(self._on):
            return await self._reader.read(n)

    def write(self, data: bytes) -> None:
        if self._writer is None:
            self._pending.append(data)  # sent once the first drain or read has chosen the connection
            return
        with _link(self._on):
            self._writer.write(data)

    async def drain(self) -> None:
        await self._open()
        assert self._writer is not None
        with _link(self._on):
            await self._writer.drain()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def wait_closed(self) -> None:
        if self._writer is not None:
            await self._writer.wait_closed()


class SshExecutor(Executor):
    """Runs runners on a remote machine over the site's shared SSH connections (interactive and bulk).

    The first use installs jupyter_split there if it is missing or differs (`ready`). Sessions work where
    the site's sshd forwards unix sockets; elsewhere every cell is a one-shot runner followed through its
    event log. Raises ExecutorError when made for a site whose `workdir` is not an absolute path.
    """

    kind = "ssh"

    def __init__(self, site: SiteConfig, config: Config):
        super().__init__(site, config)
        if not site.workdir or not site.workdir.startswith("/"):
            raise ExecutorError(
                f"site {site.name!r}: `workdir` must be an absolute path on {site.host} (got {site.workdir!r}), "
                f"e.g. workdir = \"/scratch/{site.user or 'me'}/split\" under [sites.{site.name}]"
            )
        self._python: str | None = None

    @property
    def connection(self) -> SiteConnection:
        """The site's shared connection for the running event loop."""
        return connection_for(self.site, self.config)

    @property
    def workdir(self) -> str:
        """The site's `workdir`, normalized; it is absolute (checked when the executor is made)."""
        return posixpath.normpath(self.site.workdir or "/")

    @property
    def base_python(self) -> str:
        """The site's own interpreter (from the config), before any bootstrap."""
        return self.site.python or "python3"

    @property
    def python(self) -> str:
        """The runner's python: the one `ready` found or installed, else the site's own until then."""
        return self._python or self.base_python

    async def ready(self) -> str:
        """The runner's python, installing jupyter_split on the site first if it is missing or differs."""
        if self._python is None:
            python = await bootstrap.ensure_installed(self)
            # Without unix-socket forwarding no live channel exists: runs are one-shot, followed by their log.
            self.supports_sessions = await self.connection.can_forward_unix(python, self.path("sock"))
            self._python = python
        return self._python

    async def doctor(self) -> dict[str, Any]:
        """For `%split doctor`: the site's python and jupyter_split there; installs it if missing or different."""
        report = await bootstrap.doctor(self)
        if report.get("runner_python"):
            self._python = report["runner_python"]
        return report

    async def probe(self) -> dict[str, Any]:
        """Versions of the runner's python on the site, after installing jupyter_split there if needed."""
        python = await self.ready()
        done = await self.connection.check([python, "-c", PROBE], f"reading versions with {python}", timeout=120)
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        """Start the runner detached on the site (its own session, output to `runner.log`), its secrets
        and config passed through the SSH channel's stdin, never a command line or a file.

        Returns {pid, host, started}. Raises SshError for a session runner where the site's sshd refuses
        unix-socket forwarding: from then on this executor has no sessions, so the same cell run again works.
        """
        python = await self.ready()
        if "--session" in spec.argv and not self.supports_sessions:
            raise SshError(
                f"site {self.site.name!r}: its sshd refuses unix-socket forwarding (AllowStreamLocalForwarding no "
                "or DisableForwarding yes), so a live session cannot be reached. From now on cells on this site "
                "run as one-shot runners whose output is read from their event log: run the cell again. "
                "For live sessions, ask the cluster's admins to allow stream-local forwarding."
            )
        job = {"run_dir": spec.run_dir, "argv": self.runner_command(spec), "env": self.site_environment(spec),
               "stdin": base64.b64encode(spec.stdin).decode()}
        done = await self.connection.check([python, "-c", _LAUNCH], f"starting the runner for {spec.run_id}",
                                           input=json.dumps(job).encode(), timeout=60)
        pid = json.loads(done.stdout.decode().strip().splitlines()[-1])["pid"]
        return {"pid": pid, "host": self.site.host, "started": time.time()}

    async def alive(self, handle: dict[str, Any]) -> bool:
        """Whether the pid is still a jupyter_split runner, by its /proc cmdline read over SFTP (no
        process is started on the site). Raises LinkError when the site does not answer in time."""
        pid = handle.get("pid")
        if not pid:
            return False
        # The command line guards against a reused pid: only a jupyter_split runner counts.
        # Read over SFTP: no process is started on the site (an exec costs a fork and a shell,
        # hundreds of ms on a busy login node); a zombie's cmdline is empty.
        try:
            cmdline = await asyncio.wait_for(self.connection.read_pseudo(f"/proc/{int(pid)}/cmdline"),
                                             self.site.connect_timeout * 2)
        except FileNotFoundError:
            return False
        except asyncio.TimeoutError:
            self.connection.interactive.failing()  # silent: a reconnect must not keep this connection
            raise LinkError(f"site {self.site.name!r}: no answer within {self.site.connect_timeout * 2:g} s") from None
        return any(marker in cmdline for marker in RUNNER_MARKERS)

    async def signal(self, handle: dict[str, Any], sig: str) -> None:
        """Send INT, TERM or KILL to the runner's process group on the site; nothing where it is gone.
        Raises ValueError for any other signal."""
        if sig not in _SIGNALS:
            raise ValueError(f"signal {sig!r} is not one of {', '.join(_SIGNALS)}")
        pid = handle.get("pid")
        if not pid or not await self.alive(handle):
            return
        # The runner leads its own session, so its pid is its process group: cells' children get it too.
        await self.connection.run(["kill", "-s", sig, "--", f"-{int(pid)}"], timeout=self.site.connect_timeout * 2)

    async def remove_run_dir(self, run_dir: str, run_id: str) -> None:
        """Delete the run's folder on the site (only its own: `run_dir_to_remove`); nothing if it is gone."""
        path = self.run_dir_to_remove(run_dir, run_id)
        await self.connection.check(["rm", "-rf", "--", path], f"remove run directory {path}",
                                    timeout=self.site.connect_timeout * 4)

    async def open_channel(self, sock_path: str) -> tuple[Any, Any]:
        """A stream to the runner's unix socket, forwarded over the site's interactive SSH connection (a
        large --in or --out payload: the bulk one), opened by the first drain or read; a dropped link
        raises ConnectionResetError, as a socket would."""
        channel = _Channel(self.connection, sock_path)
        return channel, channel

    def reaches(self, sock_path: str) -> bool:
        """Whether a channel to the runner at `sock_path` is open now (the one ready for the next cell)."""
        return self.connection.ready.ready(sock_path)

    async def read_file(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        """A file on the site from `offset` (below 0: from its end), at most `size` bytes, over SFTP;
        FileNotFoundError if it is absent."""
        return await self.connection.read_file(path, offset, size)

    async def file_info(self, path: str) -> tuple[int, float] | None:
        """The file's (size, modification time) from one SFTP stat on the interactive connection; None
        where it is absent, or the link cannot answer now (the caller's read then says why)."""
        try:
            attrs = await (await self.connection.sftp()).stat(path)
        except (asyncssh.Error, OSError):
            return None
        return attrs.size or 0, attrs.mtime or 0

    async def write_file(self, path: str, data: bytes) -> None:
        """Write a file on the site whole (a temp name, then a rename), over SFTP; folders are made."""
        await self.connection.write_file(path, data)

    async def wide_above(self) -> int | None:
        """WIDE_BYTES on a far site (`WidePath.far`); None on a near one."""
        return WIDE_BYTES if await self.wide.far() else None

    @property
    def wide(self) -> WidePath:
        """The connections big --in and --out payloads go on, beside the site's shared ones (same event
        loop), made on first use and kept for the next payload."""
        conn = self.connection
        path = _WIDE.get(conn)
        if path is None:
            path = _WIDE[conn] = WidePath(conn, self.config.sync.max_connections)
        return path

    async def write_payload(self, path: str, chunks: Iterable[memoryview], size: int,
                            on_bytes: Callable[[int], None] | None = None) -> None:
        """Write a payload file on the site over several connections of its own (`ssh/wide.py`) above
        WIDE_BYTES on a far site; a smaller one, or any on a near site, as any file."""
        wide = await self.wide_above()
        if wide is None or size <= wide:
            await super().write_payload(path, chunks, size, on_bytes)
            return
        try:
            await self.wide.write(path, chunks, size, on_bytes)
        except asyncssh.SFTPError as exc:
            raise ExecutorError(f"site {self.site.name!r}: writing the --in data to {path} failed: {exc}") from None

    async def read_payload(self, path: str, size: int,
                           on_bytes: Callable[[int], None] | None = None) -> bytes | bytearray:
        """A payload file on the site, over several connections of its own above WIDE_BYTES on a far site."""
        wide = await self.wide_above()
        if wide is None or size <= wide:
            return await super().read_payload(path, size, on_bytes)
        try:
            return await self.wide.read(path, size, on_bytes)
        except asyncssh.SFTPError as exc:
            raise ExecutorError(f"site {self.site.name!r}: reading the --out data from {path} failed: {exc}") from None

    async def describe(self) -> dict[str, Any]:
        """Reachability, the time one command (`uname -n`) takes, and the site's host name."""
        conn = self.connection
        started = time.perf_counter()
        done = await conn.run(["uname", "-n"], timeout=self.site.connect_timeout * 2)
        latency = (time.perf_counter() - started) * 1000
        return {"reachable": done.returncode == 0, "latency_ms": round(latency, 1), "host": done.text().strip()}

    async def reconnect(self) -> None:
        """Drop the site's shared connections and connect the interactive one again."""
        # A few quick tries: the caller (following a run) keeps its own, longer backoff. After a cut,
        # the check that the runner lives has already connected again: a second login would only
        # keep the output waiting longer (several round trips on a far link).
        await self.connection.reconnect(attempts=3, keep_fresh=True)

    async def close(self) -> None:
        """Close the site's shared connections for this event loop; the next call connects again."""
        conn = self.connection
        await conn.close()
        wide = _WIDE.pop(conn, None)
        if wide is not None:
            await wide.close()


EXECUTOR = SshExecutor
