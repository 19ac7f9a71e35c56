"""Routes what a cell prints, displays and returns into its run's event log.

The runner's IPython shell uses these classes in place of a kernel's ZMQ ones:
stdout and stderr are batched into `stream` records (a flush at most every 50 ms
or every 64 KiB keeps 100,000 prints cheap), display() becomes `display`, the
value of the last expression `result`, and a traceback `error`.
"""
from __future__ import annotations

import io
import threading
from typing import Any, Callable

from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from traitlets import Type

FLUSH_SECONDS = 0.05
FLUSH_BYTES = 64 * 1024

Emit = Callable[..., Any]


class Capture:
    """The current run's sink; `emit` is None between runs (output then goes nowhere)."""

    def __init__(self) -> None:
        self.emit: Emit | None = None
        self.streams = {name: EventStream(name, self) for name in ("stdout", "stderr")}
        self._stop = threading.Event()
        threading.Thread(target=self._flusher, name="split-flush", daemon=True).start()

    def record(self, type_: str, **fields: Any) -> None:
        """Emit a record after any pending stream text, so the order is the order of calls."""
        self.flush()
        if self.emit is not None:
            self.emit(type_, **fields)

    def flush(self) -> None:
        for stream in self.streams.values():
            stream.flush()

    def _flusher(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush()


class EventStream(io.TextIOBase):
    def __init__(self, name: str, capture: Capture):
        self.name = name
        self._capture = capture
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.RLock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            if self._size >= FLUSH_BYTES:
                self._flush_locked()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._parts:
            return
        text, self._parts, self._size = "".join(self._parts), [], 0
        emit = self._capture.emit
        if emit is not None:
            emit("stream", name=self.name, text=text)


CAPTURE = Capture()


class RunnerDisplayPublisher(DisplayPublisher):
    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs) -> None:
        fields: dict[str, Any] = {"data": data, "metadata": metadata or {}}
        if transient:
            fields["transient"] = transient
        if update:
            fields["update"] = True
        CAPTURE.record("display", **fields)

    def clear_output(self, wait: bool = False) -> None:
        CAPTURE.record("clear", wait=wait)


class RunnerDisplayHook(DisplayHook):
    def start_displayhook(self) -> None:
        pass

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict, md_dict=None) -> None:
        CAPTURE.record("result", data=format_dict, metadata=md_dict or {}, execution_count=self.prompt_count)

    def finish_displayhook(self) -> None:
        CAPTURE.flush()


class RunnerShell(InteractiveShell):
    """An IPython shell whose output goes to the event log instead of a terminal."""

    display_pub_class = Type(RunnerDisplayPublisher)
    displayhook_class = Type(RunnerDisplayHook)

    def _showtraceback(self, etype, evalue, stb) -> None:
        CAPTURE.record("error", ename=getattr(etype, "__name__", str(etype)), evalue=str(evalue), traceback=list(stb))

    def ask_yes_no(self, prompt, default=None, interrupt=None):  # noqa: ARG002 - IPython's signature
        raise RuntimeError("a remote cell cannot ask questions: nothing is attached to its input")
