"""The ssh executor: runners on a remote machine, over one shared asyncssh connection.

The runner starts detached (its own session, output to a file in its run directory),
so it outlives the connection and the notebook. Secrets and the config reach it on the
SSH channel's stdin, through a small launcher that hands them to the runner's stdin:
never a command line, never a file. The live channel is the runner's unix socket,
reached by direct-streamlocal over the same connection.
"""
from __future__ import annotations

import asyncio
import base64
import json
import posixpath
import time
from contextlib import contextmanager
from typing import Any, Iterator

import asyncssh

from ..ssh import bootstrap
from ..config import Config, SiteConfig
from ..ssh.connection import LinkError, SiteConnection, SshError, connection_for
from ..protocol import PROBE
from .base import RUNNER_MARKERS, Executor, ExecutorError, LaunchSpec

_SIGNALS = ("INT", "TERM", "KILL")
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
def _link() -> Iterator[None]:
    try:
        yield
    except (asyncssh.Error, BrokenPipeError) as exc:
        raise ConnectionResetError(f"the SSH link dropped: {exc}") from None


class _Channel:
    """asyncssh's stream pair with link failures raised as ConnectionError, as callers expect of sockets."""

    def __init__(self, reader: asyncssh.SSHReader[bytes], writer: asyncssh.SSHWriter[bytes]):
        self._reader, self._writer = reader, writer

    async def readline(self) -> bytes:
        with _link():
            return await self._reader.readline()

    async def readexactly(self, n: int) -> bytes:
        with _link():
            return await self._reader.readexactly(n)

    async def read(self, n: int = -1) -> bytes:
        with _link():
            return await self._reader.read(n)

    def write(self, data: bytes) -> None:
        with _link():
            self._writer.write(data)

    async def drain(self) -> None:
        with _link():
            await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()


class SshExecutor(Executor):
    """Runs runners on a remote machine over the site's one shared SSH connection.

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

    async def open_channel(self, sock_path: str) -> tuple[Any, Any]:
        """A stream to the runner's unix socket, forwarded over the SSH connection; a dropped link
        raises ConnectionResetError, as a socket would."""
        reader, writer = await self.connection.open_unix(sock_path)
        channel = _Channel(reader, writer)
        return channel, channel

    async def read_file(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        """A file on the site from `offset` (below 0: from its end), at most `size` bytes, over SFTP;
        FileNotFoundError if it is absent."""
        return await self.connection.read_file(path, offset, size)

    async def write_file(self, path: str, data: bytes) -> None:
        """Write a file on the site whole (a temp name, then a rename), over SFTP; folders are made."""
        await self.connection.write_file(path, data)

    async def describe(self) -> dict[str, Any]:
        """Reachability, the time one command (`uname -n`) takes, and the site's host name."""
        conn = self.connection
        started = time.perf_counter()
        done = await conn.run(["uname", "-n"], timeout=self.site.connect_timeout * 2)
        latency = (time.perf_counter() - started) * 1000
        return {"reachable": done.returncode == 0, "latency_ms": round(latency, 1), "host": done.text().strip()}

    async def reconnect(self) -> None:
        """Drop the site's shared connection and connect it again."""
        # A few quick tries: the caller (following a run) keeps its own, longer backoff.
        await self.connection.reconnect(attempts=3)

    async def close(self) -> None:
        """Close the site's shared connection for this event loop; the next call connects again."""
        await self.connection.close()


EXECUTOR = SshExecutor
