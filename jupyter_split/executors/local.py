"""The local executor: runners as processes on this machine (how `home` runs on domestic cards)."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..paths import data_dir
from ..transfer import probe_versions
from . import files
from .base import RUNNER_MARKERS, Executor, ExecutorError, LaunchSpec

_SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "KILL": signal.SIGKILL}


class LocalExecutor(Executor):
    """Runs runners as processes on this machine, each in its own session, so they outlive the kernel."""

    kind = "local"

    @property
    def workdir(self) -> str:
        """The site's `workdir` made absolute (`~` expanded), else a folder per site under the data directory."""
        if self.site.workdir:
            return str(Path(self.site.workdir).expanduser().absolute())
        return str(data_dir() / "sites" / self.site.name)

    @property
    def python(self) -> str:
        """The site's `python`, else the interpreter running this process."""
        return self.site.python or sys.executable

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        """The runner's whole environment: this process's, with `site_environment` on top."""
        return {**os.environ, **self.site_environment(spec)}

    async def probe(self) -> dict[str, Any]:
        """Versions of the site's python, read by running it here with the site's `env`."""
        env = {**os.environ, **self.site.env}
        return await asyncio.to_thread(probe_versions, self.python, env)

    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        """Start the runner as a child in its own session (no terminal signal reaches it), its output in
        `runner.log` of the run directory, secrets and config on its stdin.

        Returns {pid, started, local: true} (`files.ON_THIS_MACHINE`: the run's log can be read here
        without the config). Raises ExecutorError where the site's python cannot be started.
        """
        run_dir = Path(spec.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        log = open(run_dir / "runner.log", "ab")
        try:
            # Its own process session: the runner outlives this kernel and gets no terminal signals.
            process = subprocess.Popen(
                self.runner_command(spec), stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env=self.environment(spec), cwd=run_dir, start_new_session=True,
            )
        except OSError as exc:
            raise ExecutorError(
                f"site {self.site.name!r}: cannot start {self.python!r}: {exc.strerror}. "
                "Fix the site's `python` in the config."
            ) from None
        finally:
            log.close()
        assert process.stdin is not None
        process.stdin.write(spec.stdin)
        process.stdin.close()
        _CHILDREN[process.pid] = process
        return {"pid": process.pid, "started": time.time(), files.ON_THIS_MACHINE: True}

    async def alive(self, handle: dict[str, Any]) -> bool:
        """Whether the pid lives and is still a jupyter_split runner (a reused pid is not). A child of
        this process is asked directly."""
        pid = handle.get("pid")
        if not pid:
            return False
        child = _CHILDREN.get(pid)
        if child is not None:
            return child.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _cmdline_is_runner(pid)

    def exit_reason(self, handle: dict[str, Any]) -> str | None:
        """The exit status or killing signal of a runner this process started, once it has ended;
        None for any other."""
        child = _CHILDREN.get(handle.get("pid", 0))
        if child is None or child.returncode is None:
            return None
        code = child.returncode
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"

    async def signal(self, handle: dict[str, Any], sig: str) -> None:
        """Send `sig` to the runner's process group, so the cell's own children get it too; nothing
        where the runner is gone."""
        pid = handle.get("pid")
        if not pid or not await self.alive(handle):
            return
        try:
            os.killpg(pid, _SIGNALS[sig])
        except ProcessLookupError:
            pass

    async def open_channel(self, sock_path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream to the runner's unix socket (a line may be up to 64 MiB)."""
        return await asyncio.open_unix_connection(sock_path, limit=64 << 20)

    async def read_file(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        """The file's bytes from `offset` (below 0: from its end), at most `size` (`files.read_file`)."""
        return await files.read_file(path, offset, size)

    async def file_info(self, path: str) -> tuple[int, float] | None:
        """The file's (size, modification time), None where it is absent (`files.file_info`)."""
        return await files.file_info(path)

    async def write_file(self, path: str, data: bytes) -> None:
        """Write the file whole: a hidden temp name beside it, then a rename; missing folders are made."""
        def write() -> None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        await asyncio.to_thread(write)

    async def remove_run_dir(self, run_dir: str, run_id: str) -> None:
        """Delete the run's folder (only its own: `run_dir_to_remove`); nothing if it is gone."""
        path = self.run_dir_to_remove(run_dir, run_id)

        def remove() -> None:
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass  # removed already: what was asked for
        await asyncio.to_thread(remove)

    async def describe(self) -> dict[str, Any]:
        """Always reachable: a latency of 0 and this machine's host name."""
        return {"reachable": True, "latency_ms": 0.0, "host": os.uname().nodename}


# Runners started by this process: their exit status tells why one died (SIGKILL, OOM).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _cmdline_is_runner(pid: int) -> bool:
    """Guard against a reused pid: only a jupyter_split runner counts as alive."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    return any(marker in cmdline for marker in RUNNER_MARKERS)


EXECUTOR = LocalExecutor
