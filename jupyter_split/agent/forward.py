"""The command's side of the agent: hand a command to the running agent, and the wire both use.

Imported before anything else of a command, so it imports little beyond the standard library: where
no agent runs, a command pays a `stat` for it and nothing more.

The wire: a request is 4 bytes of length then JSON, sent with the caller's stdin, stdout and stderr
as passed file descriptors (SCM_RIGHTS) when it runs a command; each answer is one JSON line.
Nobody but this user reaches the socket: it lives in the data directory, which must be this user's
and writable by nobody else, and each side checks the other's uid (SO_PEERCRED).
"""
from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import struct
import sys
from typing import Any

from .._version import __version__
from ..errors import SplitError
from ..paths import data_dir

#: `JUPYTER_SPLIT_AGENT=off` runs every command in its own process, whatever agent runs.
SWITCH = "JUPYTER_SPLIT_AGENT"
#: A request's most bytes (its environment is most of it).
MOST = 1 << 20
#: The signals a user sends a command (Ctrl-C, Ctrl-\, a closed terminal, `kill`): passed on to it.
PASSED_ON = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM)
#: Unix socket paths are cut at 108 bytes.
LONGEST_PATH = 100


class AgentAnswerError(SplitError, OSError):
    """The agent answered what this side cannot read: the two are not the same code."""


def socket_path() -> str:
    """The agent's socket for this Python environment, this version, this module path and this data
    directory: an agent that would import other code, or keep other state, is never asked."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    where = "\0".join((sys.prefix, package, __version__, os.environ.get("PYTHONPATH", "")))
    key = hashlib.sha256(where.encode()).hexdigest()[:12]
    return os.path.join(str(data_dir()), f"agent-{key}.sock")


def private_folder_problem(folder: str) -> str | None:
    """Why `folder` cannot hold the agent's socket (another user's, or writable by others), or None."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return None
    if st.st_uid != os.getuid():
        return f"the data directory {folder} belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return (f"the data directory {folder} is writable by other users: `chmod go-w {folder}`, or set "
                "JUPYTER_SPLIT_DATA to a folder of your own")
    return None


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """Send one request, with `fds` passed along."""
    body = json.dumps(message).encode()
    data = struct.pack(">I", len(body)) + body
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = sock.sendmsg([data], ancillary)
    if sent < len(data):
        sock.sendall(data[sent:])


def answers(sock: socket.socket):
    """The agent's answers, one dict each, until it closes the connection."""
    with sock.makefile("rb") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except ValueError:
                raise AgentAnswerError(f"the agent answered {line[:80]!r}") from None


def connect(path: str, timeout: float | None = 5.0) -> socket.socket | None:
    """A connection to the agent at `path`, or None where none answers or it is not this user's."""
    if private_folder_problem(os.path.dirname(path)):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        if peer_uid(sock) != os.getuid():
            raise ConnectionRefusedError("the agent's socket is another user's")
    except OSError:
        sock.close()
        return None
    return sock


def ask(op: str, path: str | None = None) -> dict[str, Any] | None:
    """The agent's one answer to `op` ("status" or "stop"), or None where no agent runs."""
    sock = connect(path or socket_path())
    if sock is None:
        return None
    with sock:
        try:
            send(sock, {"op": op})
            return next(answers(sock), None)
        except OSError:
            return None


def forward(argv: list[str]) -> int | None:
    """Run `jupyter-split ARGV` in the agent, with this process's terminal, folder, environment and
    umask; returns its exit status, or None where no agent took it (then the caller runs it here)."""
    if os.environ.get(SWITCH, "").lower() in ("off", "0", "no") or argv[:1] == ["agent"] \
            or not hasattr(os, "fork"):
        return None
    path = socket_path()
    if not os.path.exists(path):
        return None
    sock = connect(path)
    if sock is None:
        return None
    with sock:
        umask = os.umask(0o22)
        os.umask(umask)
        # a signal the caller ignores (`nohup`, a script's `cmd &` ignores Ctrl-C) the command ignores too,
        # as it would in its own process; the others are passed on from before the request leaves: one
        # that comes before the agent names the command's process waits for its pid
        ignored = [int(sig) for sig in PASSED_ON if signal.getsignal(sig) == signal.SIG_IGN]
        request = {"op": "run", "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask,
                   "ignored": ignored}
        target: dict[str, Any] = {"pid": None, "early": []}

        def on_signal(sig: int, _frame: Any) -> None:
            if target["pid"] is None:
                target["early"].append(sig)
            else:
                _pass_on(target["pid"], sig)

        before = {sig: signal.signal(sig, on_signal) for sig in PASSED_ON if sig not in ignored}
        try:
            try:
                send(sock, request, [0, 1, 2])
                replies = answers(sock)
                first = next(replies, None)
            except OSError:
                first = None
            if first and "pid" in first:
                target["pid"] = first["pid"]
                for sig in target["early"]:
                    _pass_on(first["pid"], sig)
                sock.settimeout(None)
                return _wait(first["pid"], replies)
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)
    # refused (its code changed, say): nothing ran, so it runs here, and the signals that came meanwhile act
    # here now
    for sig in target["early"]:
        os.kill(os.getpid(), sig)
    return None


def _wait(pid: int, replies) -> int:
    """Wait for the exit status of the command's process `pid` (the caller's signals are passed on to it)."""
    try:
        last = next(replies, None)
    except OSError as exc:
        last = {"lost": str(exc)}
    if last and "exit" in last:
        return int(last["exit"])
    if last and "signal" in last:  # as the command's own process would have: die by that signal
        signal.signal(last["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), last["signal"])
        return 128 + int(last["signal"])
    print(f"jupyter-split: the agent's process for this command (pid {pid}) ended without an exit status; "
          "run it again, or with JUPYTER_SPLIT_AGENT=off to run it in its own process", file=sys.stderr)
    return 1


def _pass_on(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
