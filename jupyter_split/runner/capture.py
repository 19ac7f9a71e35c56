"""Routes what a cell prints, displays and returns into its run's event log.

The runner's IPython shell uses these classes in place of a kernel's ZMQ ones:
stdout and stderr are batched into `stream` records (a flush at most every 50 ms
or every 64 KiB keeps 100,000 prints cheap), display() becomes `display`, the
value of the last expression `result`, and a traceback `error`. A line redrawn with
"\r" (a progress bar) becomes one display updated in place, its states rate-limited (`live.py`).

The first record a run's output makes, and then one a minute at most, carries `run` (the run's
id, from its request): a notebook that folds a long output names the run whose log holds all of
it, even when it attached in the middle (`%split attach --from-last`).
"""
from __future__ import annotations

import io
import os
import threading
import time
from types import TracebackType
from typing import Any, Callable

from IPython.core.compilerop import CachingCompiler
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from traitlets import TraitError, Type

from .live import LiveLine

FLUSH_SECONDS = 0.05
FLUSH_BYTES = 64 * 1024
#: a record carries the run's id (`run`) at most this often, in seconds
NAME_RUN_SECONDS = 60.0

Emit = Callable[..., Any]


class Capture:
    """The current run's sink; `emit` is None between runs (output then goes nowhere)."""

    def __init__(self) -> None:
        self.emit: Emit | None = None
        self.run: str | None = None  # the run's id, which a record carries now and then (`send`)
        self._named = float("-inf")  # when a record last carried it
        self.streams = {name: EventStream(name, self) for name in ("stdout", "stderr")}
        self._stop = threading.Event()
        threading.Thread(target=self._flusher, name="split-flush", daemon=True).start()

    def start(self, emit: Emit) -> None:
        """Send what the next run writes to `emit`."""
        for stream in self.streams.values():
            stream.live.reset()
        self.name_run(None)
        self.emit = emit

    def stop(self) -> None:
        """Flush what the run wrote, a redrawn line's last state included; output goes nowhere
        until the next run starts."""
        self.flush()
        for stream in self.streams.values():
            stream.finish()
        self.emit = None

    def name_run(self, run_id: str | None) -> None:
        """The run's id, which its next record carries (`send`)."""
        self.run, self._named = run_id, float("-inf")

    def send(self, type_: str, **fields: Any) -> None:
        """Write one record to the run's log (nowhere between runs). The first after `name_run`
        carries the run's id as `run`, and then one a minute at most."""
        emit = self.emit
        if emit is None:
            return
        if self.run is not None and time.monotonic() - self._named >= NAME_RUN_SECONDS:
            fields["run"], self._named = self.run, time.monotonic()
        emit(type_, **fields)

    def record(self, type_: str, **fields: Any) -> None:
        """Emit a record after any pending stream text, so the order is the order of calls."""
        self.flush()
        self.send(type_, **fields)

    def flush(self) -> None:
        """Send the text buffered in stdout and stderr to the run's log now."""
        for stream in self.streams.values():
            stream.flush()

    def _flusher(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush()


class EventStream(io.TextIOBase):
    """The runner's sys.stdout or sys.stderr: batches text into `stream` records of the
    current run; a line redrawn with "\\r" becomes one display updated in place."""

    def __init__(self, name: str, capture: Capture):
        self.name = name
        self._capture = capture
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.RLock()
        self.live = LiveLine()  # a line redrawn with "\r" (a progress bar) is shown as a display

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """Always utf-8: the text goes into JSON records."""
        return "utf-8"

    def writable(self) -> bool:
        """Always True."""
        return True

    def isatty(self) -> bool:
        """Always False: no terminal is attached."""
        return False

    def write(self, text: str) -> int:
        """Buffer `text` (sent at the next flush, or at once past 64 KiB); returns its length.
        Raises TypeError for anything but a str, as a text file does."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            if self._size >= FLUSH_BYTES:
                self._flush_locked()
        return len(text)

    def flush(self) -> None:
        """Send the buffered text to the run's log now; between runs it is dropped."""
        with self._lock:
            self._flush_locked()

    def finish(self) -> None:
        """The run ends: send a redrawn line's last state if it was held back, and forget the line."""
        with self._lock:
            self._send(self.live.finish())

    def _flush_locked(self) -> None:
        if not self._parts:
            self._send(self.live.due())  # a redrawn line's state held back: written when its time comes
            return
        text, self._parts, self._size = "".join(self._parts), [], 0
        self._send(self.live.split(text))

    def _send(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        if self._capture.emit is None:
            return
        for kind, fields in records:
            if kind == "stream":
                self._capture.send("stream", name=self.name, **fields)
            else:
                self._capture.send(kind, **fields)


CAPTURE = Capture()


class RunnerDisplayPublisher(DisplayPublisher):
    """Turns display() and its updates into `display` records, and clear_output() into `clear`."""

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs) -> None:
        """Record one display; `update` marks one that replaces an earlier display by its id."""
        fields: dict[str, Any] = {"data": data, "metadata": metadata or {}}
        if transient:
            fields["transient"] = transient
        if update:
            fields["update"] = True
        CAPTURE.record("display", **fields)

    def clear_output(self, wait: bool = False) -> None:
        """Record a `clear`; with `wait`, the notebook clears at the next output, as in Jupyter."""
        CAPTURE.record("clear", wait=wait)


class RunnerDisplayHook(DisplayHook):
    """Turns the value of a cell's last expression into a `result` record; no prompt is printed."""

    def start_displayhook(self) -> None:
        """Does nothing: there is no terminal prompt to write."""
        pass

    def write_output_prompt(self) -> None:
        """Does nothing: the notebook shows its own Out[N]."""
        pass

    def write_format_data(self, format_dict, md_dict=None) -> None:
        """Record the value's formats as the cell's `result`, with its execution count."""
        CAPTURE.record("result", data=format_dict, metadata=md_dict or {}, execution_count=self.prompt_count)

    def finish_displayhook(self) -> None:
        """Send any text printed so far to the log."""
        CAPTURE.flush()


class FileCompiler(CachingCompiler):
    """Names the code of a file run (`jupyter-split run train.py`) after its file, so a traceback
    says `File train.py:5`, as Python's own would, instead of `Cell In[1]`."""

    file_name: str | None = None

    def get_code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        """The name compiled code goes by: the file's for a file run, else IPython's name for a cell."""
        return self.file_name or super().get_code_name(raw_code, transformed_code, number)

    def format_code_name(self, name: str) -> tuple[str, str] | None:
        """None for the file run's name (a traceback shows it as a plain file), else IPython's
        `Cell In[N]` label."""
        return None if name == self.file_name else super().format_code_name(name)


class RunnerShell(InteractiveShell):
    """An IPython shell whose output goes to the event log instead of a terminal."""

    display_pub_class = Type(RunnerDisplayPublisher)
    displayhook_class = Type(RunnerDisplayHook)
    compiler_class = Type(FileCompiler)

    def cell_as_shown(self, request: dict[str, Any]) -> str:
        """Take on how the notebook shows the cell (`render.cell_view`): its colours and its number
        (`Cell In[7]`); returns the code with the editor's lines above it (the magic's line) as
        comments, so line N of a traceback is line N in the editor."""
        view = request.get("view") or {}
        if view.get("colors"):
            try:
                self.colors = view["colors"]
            except TraitError:
                pass  # a scheme this IPython lacks: keep its own
        if view.get("count"):
            self.execution_count = int(view["count"])
        self.compile.file_name = view.get("file")
        CAPTURE.name_run(request.get("run_id"))
        return "".join(f"# {line}\n" for line in view.get("above", [])) + request["code"]

    def _get_exc_info(self, exc_tuple=None):
        # An interrupt or a timeout is raised in the runner's signal handler: that frame is the
        # runner's, not the cell's, and a notebook would not show it.
        etype, value, tb = super()._get_exc_info(exc_tuple)
        return etype, value, _without_runner_frames(tb)

    def _showtraceback(self, etype, evalue, stb) -> None:
        CAPTURE.record("error", ename=getattr(etype, "__name__", str(etype)), evalue=str(evalue), traceback=list(stb))

    def ask_yes_no(self, prompt, default=None, interrupt=None):  # noqa: ARG002 - IPython's signature
        """Raises RuntimeError: a remote cell has no input to answer a question from."""
        raise RuntimeError("a remote cell cannot ask questions: nothing is attached to its input")


_RUNNER_DIR = os.path.dirname(os.path.abspath(__file__))


def _without_runner_frames(tb: TracebackType | None) -> TracebackType | None:
    """`tb` up to its trailing frames in the runner's own modules (its signal handlers)."""
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    while len(entries) > 1 and os.path.dirname(entries[-1].tb_frame.f_code.co_filename) == _RUNNER_DIR:
        entries.pop()
    if entries:
        entries[-1].tb_next = None
    return entries[0] if entries else None
