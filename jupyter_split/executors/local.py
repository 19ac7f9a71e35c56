"""The local executor: runners as processes on this machine (how `home` runs on domestic cards)."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from ..config import local_python
from ..paths import data_dir
from ..transfer import probe_versions
from .base import RUNNER_MARKERS, Executor, ExecutorError, LaunchSpec

_SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "KILL": signal.SIGKILL}


class LocalExecutor(Executor):
    kind = "local"

    @property
    def workdir(self) -> str:
        if self.site.workdir:
            return str(Path(self.site.workdir).expanduser().absolute())
        return str(data_dir() / "sites" / self.site.name)

    @property
    def python(self) -> str:
        return local_python(self.site)

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        return {**os.environ, **self.site_environment(spec)}

    async def probe(self) -> dict[str, Any]:
        env = {**os.environ, **self.site.env}
        return await asyncio.to_thread(probe_versions, self.python, env)

    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
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
        return {"pid": process.pid, "started": time.time()}

    async def alive(self, handle: dict[str, Any]) -> bool:
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
        child = _CHILDREN.get(handle.get("pid", 0))
        if child is None or child.returncode is None:
            return None
        code = child.returncode
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"

    async def signal(self, handle: dict[str, Any], sig: str) -> None:
        pid = handle.get("pid")
        if not pid or not await self.alive(handle):
            return
        try:
            os.killpg(pid, _SIGNALS[sig])
        except ProcessLookupError:
            pass

    async def open_channel(self, sock_path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(sock_path, limit=64 << 20)

    async def read_file(self, path: str, offset: int = 0) -> bytes:
        def read() -> bytes:
            with open(path, "rb") as f:
                data = bytearray(max(0, os.fstat(f.fileno()).st_size - offset))
                f.seek(offset)
                del data[f.readinto(data):]
                return data
        return await asyncio.to_thread(read)

    async def write_file(self, path: str, data: bytes) -> None:
        def write() -> None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        await asyncio.to_thread(write)

    async def describe(self) -> dict[str, Any]:
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
