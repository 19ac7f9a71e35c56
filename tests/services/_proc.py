"""Shared helpers for the real test services: ports, processes, waiting, stopping by PID.

Every service here binds to 127.0.0.1 on ports chosen free at start, keeps its state in its
own directory, and is stopped by the PIDs it started (never by name: another test run may
share the machine).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable


class ServiceError(RuntimeError):
    """A test service could not start; the message says which program and how to fix it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def require(program: str, install: str) -> str:
    """The absolute path of `program`, looked up next to this interpreter first, then on PATH."""
    beside = Path(sys.executable).parent / program
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    for extra in ("", "/usr/sbin", "/sbin"):
        found = shutil.which(program, path=extra or None)
        if found:
            return found
    raise ServiceError(f"{program} not found: {install}")


def start(argv: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start a process in its own session, stdout and stderr to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    _STARTED[proc.pid] = proc
    return proc


# What `start` started, so `stop` can reap it (an unreaped Popen warns when collected).
_STARTED: dict[int, subprocess.Popen] = {}


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} was never written)"


def wait_for(ready: Callable[[], bool], what: str, timeout: float, log: Path | None = None,
             proc: subprocess.Popen | None = None) -> None:
    """Poll `ready` until it holds; fail naming `what` with the log's tail when it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what}: the process exited with {proc.returncode}\n"
                               + (tail(log) if log else ""))
        time.sleep(0.05)
    raise ServiceError(f"{what}: not ready after {timeout:.0f} s\n" + (tail(log) if log else ""))


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, what: str, timeout: float = 30, log: Path | None = None,
              proc: subprocess.Popen | None = None) -> None:
    """Wait until `port` is open, and (with `proc`) is `proc`'s: a free port picked for it may have been
    taken by another process before it bound it (tests run on several workers); then `proc` exits."""
    ready = (lambda: port_open(port)) if proc is None else (lambda: listens(proc.pid, port))
    wait_for(ready, f"{what} on 127.0.0.1:{port}", timeout, log, proc)


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` (or a child of it) listens on TCP `port`."""
    import psutil

    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for p in family for c in p.net_connections("tcp"))
    except psutil.Error:  # gone meanwhile: `wait_for` sees it exit
        return False


def wait_file(path: Path, what: str, timeout: float = 30, log: Path | None = None,
              proc: subprocess.Popen | None = None) -> None:
    wait_for(path.exists, f"{what} ({path})", timeout, log, proc)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists" until reaped.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def stop(pids: int | Iterable[int], grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
    """Send `sig` to each PID, then SIGKILL whatever is still alive after `grace` seconds."""
    pids = [pids] if isinstance(pids, int) else [p for p in pids if p]
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_exists(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _exists(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc = _STARTED.pop(pid, None)
        if proc is not None:
            proc.wait(timeout=10)
