"""The agent itself (`python -m jupyter_split.agent.serve`): import what commands use, then fork a
process for each command handed to it.

Each command gets two processes forked from the agent: one runs it as `jupyter-split` would (the
caller's terminal on its stdin, stdout and stderr, the caller's folder, environment and umask) and
ends the way a command's own process ends (threads joined, exit handlers run); the other waits for
it, passes its exit status back, and stops it if the caller goes away (SIGHUP, as a closed terminal
would). The agent itself runs no thread, so that a fork copies nothing half done; it answers one
request at a time, and stops when idle, when asked, when its socket is taken away, or when a module
of its code changed on disk (the next command then runs in its own process, with the new code).
"""
from __future__ import annotations

import argparse
import array
import atexit
import gc
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from .forward import LONGEST_PATH, MOST, PASSED_ON, peer_uid, private_folder_problem, socket_path

#: What a command imports that costs: the verbs, the config's models, the policy, the sync engine,
#: the SSH library and fsspec's backends. Imported once, here; each command's process has them.
PRELOAD = ("jupyter_split.cli", "jupyter_split.config", "jupyter_split.core.split", "jupyter_split.policy",
           "jupyter_split.sync", "jupyter_split.ssh.library", "fsspec.implementations.local")
#: Minutes an agent waits for a command before it stops.
IDLE_MINUTES = 30.0
#: Seconds a caller has to send its request once connected.
REQUEST_SECONDS = 5.0


@dataclass
class Job:
    """A command handed over: its connection, its request, and the caller's stdin, stdout, stderr."""

    conn: socket.socket
    request: dict[str, Any]
    fds: list[int]


def main(argv: list[str] | None = None) -> int:
    """Serve commands at the socket of this install and data directory until idle, asked, or stale."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_split.agent.serve")
    parser.add_argument("--idle", type=float, default=IDLE_MINUTES, help="minutes without a command before it stops")
    args = parser.parse_args(argv)
    for name in PRELOAD:
        importlib.import_module(name)
    from .. import commands

    commands.load_verbs()
    gc.freeze()  # what the imports made is never collected: a command's collections leave its pages shared
    if threading.active_count() > 1:  # a fork would copy another thread's locks mid-use
        print(f"agent: {threading.active_count() - 1} thread(s) started while importing; not serving", file=sys.stderr)
        return 1
    job = Agent(socket_path(), args.idle * 60).serve()
    if job is not None:
        run(job)  # only in the processes forked for one command, which end there
    return 0


def code_signature() -> dict[str, int]:
    """The modification time of every module of the package this process has imported."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(package + os.sep):
            try:
                found[path] = os.stat(path).st_mtime_ns
            except OSError:
                found[path] = -1
    return found


class Agent:
    """The serving loop: accept, check, fork; `serve` returns only in a command's forked process."""

    def __init__(self, path: str, idle: float) -> None:
        self.path = path
        self.idle = idle
        self.started = time.time()
        self.served = 0
        self.signature = code_signature()
        self.inode = 0
        self.owner = os.getpid()

    def serve(self) -> Job | None:
        listener = self._listen()
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps each command's watcher
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(_stopping("SIGTERM")))
        deadline = time.monotonic() + self.idle
        print(f"agent: pid {os.getpid()} serving at {self.path}", file=sys.stderr, flush=True)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self._still_mine():
                    return _stopping("idle" if left <= 0 else "its socket was removed or taken by another agent")
                if not select.select([listener], [], [], min(left, 5.0))[0]:
                    continue
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                deadline = time.monotonic() + self.idle
                job, stop = self._take(conn)
                if stop:
                    return _stopping(stop)
                if job is not None and os.fork() == 0:
                    listener.close()
                    return job
                if job is not None:
                    for fd in job.fds:
                        os.close(fd)
                    conn.close()
        finally:
            if os.getpid() == self.owner:
                self._remove()

    def _listen(self) -> socket.socket:
        folder = os.path.dirname(self.path)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        problem = private_folder_problem(folder)
        if problem:
            raise SystemExit(f"agent: {problem}")
        if len(self.path) > LONGEST_PATH:
            raise SystemExit(f"agent: the socket's path {self.path} is over {LONGEST_PATH} bytes, more than a unix "
                             "socket takes: set JUPYTER_SPLIT_DATA to a shorter folder")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fresh = f"{self.path}.{os.getpid()}"
        old = os.umask(0o177)  # the socket is created 0600: no moment when another user could connect
        try:
            listener.bind(fresh)
        finally:
            os.umask(old)
        listener.listen(16)
        os.replace(fresh, self.path)  # atomic: a caller finds the old agent or this one, never nothing
        self.inode = os.stat(self.path).st_ino
        return listener

    def _still_mine(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def _remove(self) -> None:
        if self._still_mine():
            os.unlink(self.path)

    def _take(self, conn: socket.socket) -> tuple[Job | None, str]:
        """Read and check one request; answer what needs no fork. Returns (a job to fork, why it stops now)."""
        conn.settimeout(REQUEST_SECONDS)
        fds: list[int] = []
        try:
            if peer_uid(conn) != os.getuid():
                conn.close()
                return None, ""
            request = _receive(conn, fds)
            op = request.get("op")
            if op == "status":
                _answer(conn, {"pid": os.getpid(), "since": self.started, "served": self.served,
                               "idle_minutes": self.idle / 60, "path": self.path})
            elif op == "stop":
                _answer(conn, {"stopped": os.getpid()})
                return None, "asked to"
            elif op == "run":
                problem = _run_problem(request, fds)
                if problem is None and code_signature() != self.signature:
                    _answer(conn, {"refused": "the agent's code changed on disk since it started; it stops"})
                    return None, "its code changed on disk"
                if problem is None:
                    self.served += 1
                    conn.settimeout(None)
                    return Job(conn, request, fds), ""
                _answer(conn, {"refused": problem})
            else:
                _answer(conn, {"refused": f"unknown op {op!r}"})
        except (OSError, ValueError) as exc:
            print(f"agent: a request was dropped: {type(exc).__name__}", file=sys.stderr, flush=True)
        for fd in fds:
            os.close(fd)
        conn.close()
        return None, ""


def _stopping(why: str) -> None:
    print(f"agent: pid {os.getpid()} stops: {why}", file=sys.stderr, flush=True)


def _receive(conn: socket.socket, fds: list[int]) -> dict[str, Any]:
    """One request; the descriptors passed with it go into `fds` first, so that the caller closes
    them whatever is wrong with the request."""
    passed = array.array("i")
    data, ancillary, _, _ = conn.recvmsg(MOST, socket.CMSG_LEN(3 * passed.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            passed.frombytes(payload[: len(payload) - len(payload) % passed.itemsize])
    fds.extend(passed)
    if len(data) < 4:
        raise ValueError("a request shorter than its length")
    size = struct.unpack(">I", data[:4])[0]
    if size > MOST:
        raise ValueError("a request over its limit")
    body = data[4:]
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            raise ValueError("a request cut short")
        body += more
    request = json.loads(body)
    if not isinstance(request, dict):
        raise ValueError("a request that is not an object")
    return request


def _run_problem(request: dict[str, Any], fds: list[int]) -> str | None:
    """What is wrong with a run request, or None."""
    argv, env = request.get("argv"), request.get("env")
    if len(fds) != 3:
        return "a command needs its stdin, stdout and stderr passed"
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        return "argv must be a list of strings"
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        return "env must map strings to strings"
    if not (isinstance(request.get("cwd"), str) and os.path.isdir(request["cwd"])):
        return "cwd must be a folder"
    if not (isinstance(request.get("umask"), int) and 0 <= request["umask"] <= 0o777):
        return "umask must be 0 to 0o777"
    ignored = request.get("ignored")
    if not (isinstance(ignored, list) and all(type(sig) is int and sig in PASSED_ON for sig in ignored)):
        return "ignored must list signals among " + ", ".join(str(int(sig)) for sig in PASSED_ON)
    return None


def _answer(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def run(job: Job) -> NoReturn:
    """In the process forked for `job`: fork the command's process, and here wait for it."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        _command(job)
    for fd in job.fds:
        os.close(fd)
    try:
        _answer(job.conn, {"pid": pid})
    except OSError:  # the caller is gone already
        os.kill(pid, signal.SIGHUP)
        os._exit(0)
    try:
        _answer(job.conn, _watch(job.conn, pid))
    except OSError:
        pass
    os._exit(0)  # the watcher leaves no trace: no exit handler of the agent's runs twice


def _watch(conn: socket.socket, pid: int) -> dict[str, int]:
    """Wait for the command's process; if the caller goes away first, end it as a closed terminal would."""
    pidfd = os.pidfd_open(pid)
    watched: list[Any] = [conn, pidfd]
    kill_at = None
    while True:
        wait = None if kill_at is None else max(0.0, kill_at - time.monotonic())
        ready = select.select(watched, [], [], wait)[0]
        if pidfd in ready:
            break
        if conn in ready and not conn.recv(64):  # the caller is gone
            watched = [pidfd]
            os.kill(pid, signal.SIGHUP)
            kill_at = time.monotonic() + 5.0
        elif kill_at is not None and time.monotonic() >= kill_at:
            os.kill(pid, signal.SIGKILL)
            kill_at = None
    os.close(pidfd)
    status = os.waitpid(pid, 0)[1]
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.waitstatus_to_exitcode(status)}


def _command(job: Job) -> NoReturn:
    """Become the caller's command (its terminal, folder, environment, umask, signals) and run it."""
    try:
        _become(job)
        from .. import cli

        code = cli.main(job.request["argv"])
    except SystemExit as exc:
        code = _status(exc.code)
    except KeyboardInterrupt:  # as Python ends on an uncaught Ctrl-C: the traceback, then death by SIGINT
        sys.excepthook(*sys.exc_info())
        _end(0, signal.SIGINT)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    _end(code)


def _become(job: Job) -> None:
    for target, fd in enumerate(job.fds):
        os.dup2(fd, target)
        os.close(fd)
    job.conn.close()
    request = job.request
    # the caller's dispositions: a signal it ignores (started by `nohup`, or with `&` in a script) stays
    # ignored, as Python leaves an inherited SIG_IGN; the others as in a fresh interpreter
    ignored = set(request["ignored"])
    signal.signal(signal.SIGINT, signal.SIG_IGN if signal.SIGINT in ignored else signal.default_int_handler)
    for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
    encoding = sys.stdout.encoding
    sys.stdin = sys.__stdin__ = open(0, "r", encoding=encoding, closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding=encoding, closefd=False, buffering=1 if os.isatty(1) else -1)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding=encoding, errors="backslashreplace", closefd=False,
                                       buffering=1)
    sys.argv = ["jupyter-split", *request["argv"]]
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # the caller's TMPDIR, not the agent's


def _status(code: Any) -> int:
    """The exit status `sys.exit(code)` gives."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def _end(code: int, sig: int | None = None) -> NoReturn:
    """End the command's process as the interpreter ends one (threads joined, exit handlers run,
    output flushed), less tearing down each module and object: that touches every object the agent
    imported, and in a forked process each touched page is copied (0.15 s a command, measured). Python
    does not promise to finalize the objects still alive at exit, so nothing relies on it."""
    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter calls at exit: joins threads
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if sig is not None:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
