"""Start, stop and read the agent (`jupyter-split agent start|stop|status`)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from ..errors import SplitError
from ..paths import data_dir
from .forward import ask, private_folder_problem, socket_path

#: Seconds a start waits for the agent's imports and its socket.
START_SECONDS = 60.0


class AgentError(SplitError):
    """The agent could not start: the message says why and what to do."""


def log_path() -> str:
    """Where the agent writes its few lines (started, stopped, a dropped request): never a request."""
    return os.path.join(str(data_dir()), "agent.log")


def status() -> dict[str, Any] | None:
    """The running agent's pid, start time, commands served and idle limit, or None."""
    _check_folder()
    return ask("status")


def stop() -> int | None:
    """Stop the running agent; its pid, or None where none ran."""
    _check_folder()
    answer = ask("stop")
    return answer.get("stopped") if answer else None


def _check_folder() -> None:
    """Raise AgentError where the data directory is not this user's alone: no agent is asked there."""
    problem = private_folder_problem(str(data_dir()))
    if problem:
        raise AgentError(f"no agent is used from there: {problem}")


def start(idle_minutes: float) -> tuple[dict[str, Any], bool]:
    """Start an agent unless one runs; returns (its status, whether this call started it)."""
    running = status()  # (which checks the folder)
    if running:
        return running, False
    os.makedirs(data_dir(), mode=0o700, exist_ok=True)
    with open(log_path(), "ab") as log:
        # its own session: a Ctrl-C at this terminal, or the terminal closing, does not reach it
        process = subprocess.Popen([sys.executable, "-m", "jupyter_split.agent.serve", "--idle", str(idle_minutes)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, cwd="/",
                                   start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        answer = ask("status", socket_path())
        if answer and answer.get("pid") == process.pid:
            return answer, True
        if answer and process.poll() is not None:  # another start's agent won the socket; this one left
            return answer, False
        if process.poll() is not None:
            raise AgentError(f"the agent stopped as it started (exit status {process.returncode}): "
                             f"{_last_line(log_path())}")
        time.sleep(0.05)
    process.kill()
    raise AgentError(f"the agent did not answer within {START_SECONDS:.0f} s; see {log_path()}")


def _last_line(path: str) -> str:
    with open(path, "rb") as log:
        lines = log.read()[-4000:].decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"nothing in {path}"
