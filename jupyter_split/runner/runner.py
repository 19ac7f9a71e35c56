"""The runner: the process on a site that executes cells and writes their event logs.

    python -m jupyter_split.runner --session DIR --socket PATH   # a session: one namespace, many cells
    python -m jupyter_split.runner --run-dir DIR [--socket PATH]  # one cell, then exit (detached/fresh)
    python -m jupyter_split.runner --probe                        # print versions as JSON

A one-shot runner finds `request.json` (and `in.pkl`) in its run directory, written by the client.
A session takes a cell's request with it: `execute {run_dir, request, follow}` on its socket writes
the request.json itself, so a warm cell costs one round trip. Secrets and the config arrive as one
JSON line on stdin (`--stdin-json`), never on the command line. Requests on the unix socket are
JSON lines: `hello`, `execute {run_dir[, request][, follow, after]}`, `follow {run_dir, after}`;
events come back as JSON lines, the same records as the log.
Variables can also move over the socket, like a pipe: `put {run_dir, size}` then the raw
payload (the cell's --in), and `get {run_dir}` answered by `{size}` then the raw --out payload;
`get {run_dir, file_above}` answers `{size, file}` alone for a payload larger than `file_above`,
whole in its file, which the client reads over connections of its own.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from traitlets.config import Config as TraitletsConfig

from .. import tracking, transfer
from ..protocol import versions
from .capture import CAPTURE, RunnerShell
from .server import serve_socket
from ..runs.events import EventLog, is_final, iter_events, write_json_atomic
from .namespace import PredefinedNamespace

DEFAULT_IDLE_TIMEOUT = 24 * 3600.0
SESSION_CHECK_SECONDS = 30.0
KEEP_OUTPUTS = 2


def _segment_bytes() -> int:
    """The size at which a run's event log rolls to a new segment: `[runs] log_segment_bytes` of the
    config the client sent (a runner started without one reads the site's, else the default)."""
    from ..config import load_config

    return load_config().runs.log_segment_bytes


class Runner:
    """Runs cells in one IPython namespace and writes each run's event log and status.json.

    One per process: it installs the SIGINT/SIGTERM handlers and takes over stdin, stdout
    and stderr. Cells run on the main thread only (`run`), where the signals land; the
    socket's threads call `submit`, `follow` and `output`.
    """

    session = False  # a long-lived session (set by main) or a one-shot runner

    def __init__(self, site: str, accelerator: str):
        self.site = site
        self.accelerator = accelerator
        cfg = TraitletsConfig()
        cfg.HistoryManager.hist_file = ":memory:"
        # No history database: a cell takes the notebook's number (`Cell In[7]`), and numbers repeat
        # (a restarted kernel, two notebooks on one session), which a database refuses loudly.
        cfg.HistoryManager.enabled = False
        self.shell = RunnerShell.instance(config=cfg, user_ns=PredefinedNamespace(accelerator))
        self.jobs: queue.Queue[str] = queue.Queue()
        self.dropped: set[str] = set()  # queued cells cancelled before they ran (`drop`)
        self.current: str | None = None  # the run_dir of the cell running now
        self.logs: dict[str, EventLog] = {}
        self.subscribers: dict[str, list[queue.Queue[dict[str, Any]]]] = defaultdict(list)
        self.payloads: dict[str, bytearray] = {}   # --in data sent over the socket, by run dir
        self.outputs: dict[str, transfer.Payload] = {}  # --out data of recent runs, by run dir
        self.writer: threading.Thread | None = None
        self.lock = threading.Lock()
        self.runs_root: str | None = None  # a session's runs folder: where `execute` may write a request
        self.executing = False
        self.stop_reason: str | None = None
        self.terminating = False
        self.info = versions()
        signal.signal(signal.SIGINT, self._on_interrupt)
        signal.signal(signal.SIGTERM, self._on_terminate)
        sys.stdin = open(os.devnull)
        sys.stdout, sys.stderr = CAPTURE.streams["stdout"], CAPTURE.streams["stderr"]

    # -- signals: only ever raise into a running cell
    def _on_interrupt(self, signum, frame) -> None:
        if self.executing:
            raise KeyboardInterrupt

    def _on_terminate(self, signum, frame) -> None:
        self.terminating = True
        if self.executing:
            self.stop_reason = "cancelled"
            raise KeyboardInterrupt
        raise SystemExit(0)

    # -- the event log and its live subscribers
    def submit(self, run_dir: str) -> EventLog:
        """Queue the run in `run_dir` (its request.json already written); returns its event log.

        Calling it again for a run still queued or running returns the same log, so the
        socket's `execute` and `run` may both call it.
        """
        with self.lock:
            log = self.logs.get(run_dir)
            if log is None:
                log = EventLog(run_dir, on_event=lambda event, key=run_dir: self._broadcast(key, event),
                               segment_bytes=_segment_bytes())
                self.logs[run_dir] = log
                # the run's first record names it: a follower (the notebook's window) knows it from the start
                log.append("status", state="queued", host=self.info["host"], pid=os.getpid(),
                           run=os.path.basename(os.path.normpath(run_dir)))
                self.jobs.put(run_dir)
        return log

    def _broadcast(self, run_dir: str, event: dict[str, Any]) -> None:
        for subscriber in self.subscribers.get(run_dir, ()):
            subscriber.put(event)

    def follow(self, run_dir: str, after: int, send) -> None:
        """Replay the log after `after` (a chunk at a time, from its index), then stream live records
        until the final one. The writer is held only while the replay's end is fixed, not while it is sent."""
        with self.lock:
            log = self.logs.get(run_dir)
        if log is None:
            for event in iter_events(run_dir, after):
                send(event)
            return
        live: queue.Queue[dict[str, Any]] = queue.Queue()
        with log.lock:  # the log holds every record up to `upto`; each later one reaches `live`: no gap
            upto = log.seq
            self.subscribers[run_dir].append(live)
        try:
            for event in iter_events(run_dir, after):
                if event["seq"] > upto:
                    break
                send(event)
                after = event["seq"]
                if is_final(event):
                    return
            while True:
                event = live.get()
                if event["seq"] > after:
                    send(event)
                if is_final(event):
                    return
        finally:
            self.subscribers[run_dir].remove(live)

    # -- executing cells (main thread only: signals land here)
    def run(self, run_dir: str) -> str:
        """Run the cell in `run_dir` to its end (main thread only); returns the final state:
        succeeded, failed, cancelled, timeout or interrupted.

        Waits first until the previous cell's --out file is written. status.json is written
        before the final log record, so a client that sees that record can read it at once.
        """
        with self.lock:
            if run_dir in self.dropped:  # cancelled while it waited: its log says so already
                self.dropped.discard(run_dir)
                return "cancelled"
            self.current = run_dir
        if self.writer is not None:
            self.writer.join()
        path = Path(run_dir)
        log = self.submit(run_dir)
        request = json.loads((path / "request.json").read_text())
        started = time.time()
        status = {"run_id": request["run_id"], "site": self.site, "host": self.info["host"], "pid": os.getpid(),
                  "started": started, "versions": self.info, "device": str(self.shell.user_ns.get("device", f"{self.accelerator} (not probed yet)"))}
        write_json_atomic(path / "status.json", {**status, "state": "running"})
        CAPTURE.start(log.append)
        log.append("status", state="running", host=self.info["host"], pid=os.getpid())
        try:
            state, reason = self._execute(path, request)
        finally:
            CAPTURE.stop()
        # status.json first: a client that sees the final record may read it at once.
        status["device"] = str(self.shell.user_ns.get("device", f"{self.accelerator} (not used by the cell)"))
        write_json_atomic(path / "status.json", {**status, "state": state, "reason": reason, "ended": time.time(),
                                                   "wandb": tracking.run_files(path)})
        log.append("status", state=state, reason=reason, final=True)
        with self.lock:
            self.logs.pop(run_dir, None)
            self.current = None
        log.close()
        return state

    def drop(self, run_dir: str) -> bool:
        """Cancel the cell in `run_dir` if it still waits in this session's queue: it never runs, its
        log ends `cancelled`, and the cell running now and the session go on. False where it runs
        already, has ended, or was never queued here (cancelling it then ends the session)."""
        with self.lock:
            log = self.logs.get(run_dir)
            if log is None or run_dir == self.current or run_dir in self.dropped:
                return False
            self.dropped.add(run_dir)
            del self.logs[run_dir]
        reason = "cancelled while it waited in the session's queue"
        write_json_atomic(Path(run_dir) / "status.json", {"state": "cancelled", "reason": reason, "ended": time.time(),
                                                           "host": self.info["host"], "pid": os.getpid()})
        log.append("status", state="cancelled", reason=reason, final=True)
        log.close()
        return True

    def _execute(self, path: Path, request: dict[str, Any]) -> tuple[str, str | None]:
        if request.get("has_in"):
            try:
                data = self.payloads.pop(str(path), None) or transfer.read_payload(str(path / "in.pkl"))
                self.shell.user_ns.update(transfer.unpack(data))
            except Exception as exc:
                CAPTURE.record("error", ename=type(exc).__name__, evalue=str(exc), traceback=[
                    f"cannot unpickle the --in variables on site {self.site!r}: {type(exc).__name__}: {exc}",
                    "Install the module they need on this site, or send plain data."])
                return "failed", f"cannot unpickle --in variables: {exc}"
        if request.get("labels"):
            from ..policy import taint_run

            taint_run(request["labels"])  # what the --in variables carry, this run holds now
        try:  # a bad name or value fails this cell, not the session every later cell needs
            os.environ.update(request.get("env") or {})
        except (ValueError, TypeError) as exc:
            message = f"the cell's environment cannot be set on site {self.site!r}: {exc}"
            CAPTURE.record("error", ename=type(exc).__name__, evalue=message, traceback=[
                message, "Fix the site's `env` (names of letters, digits and '_'; no NUL in a value)."])
            return "failed", message
        self.stop_reason = None
        timeout = request.get("timeout")
        timer = threading.Timer(timeout, self._time_out) if timeout else None
        result = None
        try:
            self.executing = True
            if timer:
                timer.start()
            with tracking.cell_tracking(request, path, self.info, self._device_for_tracking(request)) as tracked:
                result = self.shell.run_cell(self.shell.cell_as_shown(request), store_history=True)
                tracked.exit_code = 0 if result.success else 1
        except KeyboardInterrupt:
            pass  # arrived between IPython's own handlers; the state below says what happened
        finally:
            self.executing = False
            if timer:
                timer.cancel()
        if self.stop_reason == "cancelled":
            return "cancelled", "cancelled by request"
        if self.stop_reason == "timeout":
            return "timeout", f"cell exceeded --timeout {timeout:g}s"
        error = None if result is None else (result.error_before_exec or result.error_in_exec)
        if result is None or isinstance(error, KeyboardInterrupt):
            return "interrupted", "KeyboardInterrupt"
        if error is not None:
            return "failed", f"{type(error).__name__}: {error}"
        return self._ship_out(path, request.get("out") or [])

    def _device_for_tracking(self, request: dict[str, Any]) -> Any:
        """The device W&B should record: probed (importing torch) only for a cell that uses W&B."""
        if request.get("wandb") or "wandb" in request["code"]:
            return self.shell.user_ns["device"]
        return self.shell.user_ns.get("device")

    def _time_out(self) -> None:
        if self.executing:
            self.stop_reason = "timeout"
            os.kill(os.getpid(), signal.SIGINT)

    def _ship_out(self, path: Path, names: list[str]) -> tuple[str, str | None]:
        if not names:
            return "succeeded", None
        missing = [n for n in names if n not in self.shell.user_ns]
        if missing:
            message = f"--out variable(s) {', '.join(map(repr, missing))} not defined after the cell on {self.site!r}"
            CAPTURE.record("error", ename="NameError", evalue=message, traceback=[message])
            return "failed", message
        from ..config import load_config
        from ..policy import ResidencyError, check_objects

        try:  # the variables go to the notebook, at home: the guard (and the audit log) sees them first
            check_objects({n: self.shell.user_ns[n] for n in names}, load_config().home)
        except ResidencyError as exc:
            CAPTURE.record("error", ename="ResidencyError", evalue=str(exc), traceback=[str(exc)])
            return "failed", str(exc)
        try:
            data = transfer.pack(names, self.shell.user_ns, f"on site {self.site!r}")
        except transfer.TransferError as exc:
            CAPTURE.record("error", ename="TransferError", evalue=str(exc), traceback=[str(exc)])
            return "failed", str(exc)
        from ..policy import outputs_labels

        write_json_atomic(path / "out.labels.json", outputs_labels({n: self.shell.user_ns[n] for n in names}))
        # Served from memory to a client still attached, and written to disk meanwhile for one
        # that attaches later; the next cell waits for the write, so it cannot change the bytes.
        with self.lock:
            self.outputs[str(path)] = data
            while len(self.outputs) > KEEP_OUTPUTS:
                self.outputs.pop(next(iter(self.outputs)))
        self.writer = threading.Thread(target=data.write_file, args=(str(path / "out.pkl"),), daemon=True)
        self.writer.start()
        if not self.session:
            self.writer.join()  # a one-shot runner's client reads the file right after the final record
        return "succeeded", None

    def output(self, run_dir: str) -> transfer.Payload:
        """The --out payload of an ended run. The in-memory copy (kept for the last few runs)
        is handed out once; after that it is read from the run's out.pkl, once its writer is done
        (a client that reconnects right after the first `get` must not find it half written or absent).
        Raises FileNotFoundError when neither exists."""
        with self.lock:
            data = self.outputs.pop(run_dir, None)
            writer = self.writer
        if data is None:
            if writer is not None:
                writer.join()
            data = transfer.Payload([memoryview(transfer.read_payload(os.path.join(run_dir, "out.pkl")))])
        return data


def main(argv: list[str] | None = None, runner_class: type[Runner] = Runner) -> int:
    """The runner's command line; `runner_class` lets a wrapper (`distributed`) add to the runner."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_split.runner")
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--session", metavar="DIR")
    parser.add_argument("--run-dir", metavar="DIR")
    parser.add_argument("--socket", metavar="PATH")
    parser.add_argument("--stdin-json", action="store_true")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(versions()))
        return 0
    payload = json.loads(sys.stdin.readline() or "{}") if args.stdin_json else {}
    os.environ.update(payload.get("env", {}))
    if payload.get("config"):
        from ..config import Config, activate

        activate(Config.model_validate(payload["config"]))
    from ..policy import start_taint_tracking

    start_taint_tracking(site=payload.get("site"))  # reads of resident data label what the run ships
    runner = runner_class(payload.get("site", "?"), payload.get("accelerator", "auto"))
    runner.session = bool(args.session)
    if args.session:  # the workdir holds sessions/ID and runs/ID: a session takes cells in that runs folder
        runner.runs_root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.session))), "runs")
    server = serve_socket(runner, args.socket) if args.socket else None
    try:
        if args.run_dir:
            state = runner.run(os.path.abspath(args.run_dir))
            return 0 if state == "succeeded" else 1
        _serve_session(runner, args.session, args.idle_timeout)
        return 0
    finally:
        if runner.writer is not None:
            runner.writer.join()
        if server is not None:
            server.server_close()
            os.unlink(args.socket)


def _serve_session(runner: Runner, session_dir: str, idle_timeout: float) -> None:
    idle_since = time.monotonic()
    while not runner.terminating:
        try:
            run_dir = runner.jobs.get(timeout=SESSION_CHECK_SECONDS)
        except queue.Empty:
            # Ends when idle too long, or when its session folder was deleted (nobody can reach it).
            if time.monotonic() - idle_since > idle_timeout or not os.path.isdir(session_dir):
                return
            continue
        except SystemExit:
            break
        try:
            runner.run(run_dir)
        except SystemExit:
            break
        idle_since = time.monotonic()
    for run_dir, log in list(runner.logs.items()):
        log.append("status", state="cancelled", reason="the session ended before this cell ran", final=True)

