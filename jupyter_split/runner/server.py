"""The runner's side of the live channel: a unix socket server, mode 600 in a private folder.

One JSON request a connection (`protocol`: the requests and their framing); a thread per connection,
so a slow follower never holds back the cell.
"""
from __future__ import annotations

import os
import socketserver
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import protocol
from ..runs.events import EventLog, write_json_atomic

if TYPE_CHECKING:
    from .runner import Runner


class _Handler(socketserver.StreamRequestHandler):
    runner: Runner

    def handle(self) -> None:
        try:
            request = protocol.decode(self.rfile.readline())
            op = request.get("op")
            if op == "hello":
                self._send({"ok": True, "pid": os.getpid(), "versions": self.runner.info})
            elif not op:
                return  # closed unused (a channel kept ready for the next cell)
            elif op == "execute":
                if "request" in request:  # the cell's request comes with it: one round trip for a warm cell
                    log = _accept(self.runner, request["run_dir"], request["request"])
                else:
                    log = self.runner.submit(request["run_dir"])
                self._send({"ok": True, "seq": log.seq if log is not None else None})
                if request.get("follow"):
                    self.runner.follow(request["run_dir"], int(request.get("after", 0)), self._send)
            elif op == "put":
                data = bytearray(int(request["size"]))
                view, pos = memoryview(data), 0
                while pos < len(data):
                    got = self.rfile.readinto(view[pos:])
                    if not got:
                        raise ConnectionResetError("the client went away mid-transfer")
                    pos += got
                self.runner.payloads[request["run_dir"]] = data
                self._send({"ok": True})
            elif op == "get" and request.get("file_above") is not None and \
                    (found := _output_file(self.runner, request["run_dir"], int(request["file_above"]))):
                self._send({"ok": True, "size": found[1], "file": found[0]})  # the client reads it itself
            elif op == "get":
                data = self.runner.output(request["run_dir"])
                self._send({"ok": True, "size": len(data)})
                for chunk in data.chunks(protocol.CHUNK):
                    self.wfile.write(chunk)
                self.wfile.flush()
            elif op == "follow":
                self.runner.follow(request["run_dir"], int(request.get("after", 0)), self._send)
            elif op == "drop":  # only a cell queued here is dropped: any other run_dir changes nothing
                run_dir = request.get("run_dir")
                self._send({"ok": True, "dropped": isinstance(run_dir, str) and self.runner.drop(run_dir)})
            else:
                self._send({"ok": False, "error": f"unknown op {op!r}: this runner answers {', '.join(protocol.OPS)}"})
        except FileNotFoundError as exc:
            self._send({"ok": False, "error": f"{exc.filename} not found"})
        except ValueError as exc:
            self._send({"ok": False, "error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; it resumes from its last seq when it reconnects

    def _send(self, message: dict[str, Any]) -> None:
        self.wfile.write(protocol.encode(message))
        self.wfile.flush()


def serve_socket(runner: Runner, path: str) -> socketserver.ThreadingUnixStreamServer:
    """Answer the runner's socket at `path` on a daemon thread; returns the server, which the
    caller closes (and removes `path`). Raises PermissionError when the socket's folder is
    not private to this user."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"the socket folder {folder} is not private to this user (owner uid {info.st_uid}, "
                              f"mode {info.st_mode & 0o777:o}); remove it or set the site's `workdir`")
    if os.path.exists(path):
        os.unlink(path)
    handler = type("Handler", (_Handler,), {"runner": runner})
    server = socketserver.ThreadingUnixStreamServer(path, handler)
    server.daemon_threads = True
    os.chmod(path, 0o600)
    threading.Thread(target=server.serve_forever, name="split-socket", daemon=True).start()
    return server


def _output_file(runner: "Runner", run_dir: str, above: int) -> tuple[str, int] | None:
    """Where the --out payload of an ended run lies whole on disk, and its size, if it is larger than
    `above` bytes (the client then reads the file over connections of its own); None otherwise, or
    where there is none (the runner's `output` then answers)."""
    with runner.lock:
        kept, writer = runner.outputs.get(run_dir), runner.writer
    if kept is not None and len(kept) <= above:
        return None
    if writer is not None:
        writer.join()  # the file is whole before anyone is sent to read it
    path = os.path.join(run_dir, "out.pkl")
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    if size <= above:
        return None
    with runner.lock:
        runner.outputs.pop(run_dir, None)  # handed out: from now on it is the file
    return path, size


_ACCEPTING = threading.Lock()  # one request.json written at a time: a request asked again is seen


def _accept(runner: "Runner", run_dir: str, request: dict[str, Any]) -> EventLog | None:
    """Queue the cell `request` (its request.json, sent with `execute`) in `run_dir`, a new folder in
    the session's runs folder; returns its event log, or None where the run has ended already (a
    client that lost the reply asks again: the cell runs once, and its log is replayed).

    Raises ValueError for a run_dir outside the session's runs folder, or a request that is not one."""
    root = runner.runs_root
    if root is None or not isinstance(run_dir, str) or not isinstance(request, dict) \
            or os.path.dirname(run_dir) != root or os.path.normpath(run_dir) != run_dir \
            or os.path.basename(run_dir) in ("", ".", "..") or "\0" in run_dir:
        raise ValueError(f"execute: run_dir {run_dir!r} is not a run folder of this session's {root}")
    with _ACCEPTING:
        with runner.lock:
            log = runner.logs.get(run_dir)
        if log is not None:
            return log  # queued or running: the same log
        if os.path.exists(os.path.join(run_dir, "request.json")):
            return None  # taken before, and ended: its log is whole on disk
        os.makedirs(run_dir, mode=0o700, exist_ok=True)
        write_json_atomic(Path(run_dir) / "request.json", request)
        return runner.submit(run_dir)
