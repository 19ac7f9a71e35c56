"""Showing a run's events: in a notebook cell (rich) or on a terminal (text)."""
from __future__ import annotations

import itertools
import secrets
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, TextIO

from ..core.outcome import reason_to_show


def cell_view(shell: Any, magic_line: str) -> dict[str, Any]:
    """How the notebook shows a cell magic's cell, for the runner to show its traceback the same
    way: the kernel's colours (`%colors`), the cell's number, and the magic's line above the body."""
    # prompt_count: the running cell's number in every IPython (9 counts execution_count up first)
    return {"colors": shell.colors, "count": shell.displayhook.prompt_count, "above": [magic_line]}


def terminal_view(stream: TextIO, file: str | None = None) -> dict[str, Any]:
    """A file run from a shell: its own name and line numbers, and colour only on a terminal."""
    return {"colors": None if stream.isatty() else "nocolor", "file": file}


class MimeBundle:
    """The remote cell's last value, shown with all the representations the site produced."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any] | None = None):
        self.data, self.metadata = data, metadata or {}

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.data, self.metadata

    def __repr__(self) -> str:
        return self.data.get("text/plain", "")


#: a line of a folded cell's text longer than this is cut (the log keeps it whole)
LONG_LINE = 10_000
#: a folded cell's display is redrawn at most every FOLD_SHORTEST seconds, at most FOLD_RATE
#: characters a second, and at least every FOLD_LONGEST seconds while its text changes
FOLD_SHORTEST, FOLD_RATE, FOLD_LONGEST = 0.2, 100_000, 10.0


def scrollback() -> int:
    """The lines of text a cell keeps in the notebook: the config's `[notebook] scrollback`."""
    from ..core.split import get_split

    return get_split().config.notebook.scrollback


class Scrollback:
    """A cell's text output, bounded like a terminal's scrollback, so a run that prints for a week
    leaves a notebook (and a kernel) of bounded size.

    The first `lines // 2` lines go out as streams, as printed. After them the cell's text is one
    display holding its last `lines - lines // 2` lines (a deque: the kernel keeps no more), headed
    once it overflows by "… N lines left out here: `%split logs RUN` shows them all". Each redraw
    sends the whole display, so it is redrawn at a bounded rate (`interval`): at once the first
    time, then at most 5 times a second and at most 100,000 characters a second (a full window of
    5,000 lines of 80 characters: every 2 s), so a week of output is not a week of redraws of
    thousands of lines, while a log printing a line now and then shows it at once. A redraw held
    back is made when its time comes (a timer) even if nothing more is printed, and `flush` makes
    it at once (the run's end): the last lines are never lost, only shown late by a second or two.
    Stdout and stderr share the window, in the order the run's log has them.
    """

    def __init__(self, lines: int, write: Callable[[str, str], None], show: Callable[..., None],
                 clock: Callable[[], float] = time.monotonic):
        self.head = lines // 2
        self._write, self._show, self._clock = write, show, clock
        self._lock = threading.RLock()
        self.room = lines - self.head  # lines the tail display holds
        self._tail: deque[str] = deque()
        self.run: str | None = None
        self._timer: threading.Timer | None = None
        self.reset()

    def reset(self) -> None:
        """Start over: the cell's output was cleared."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self.streamed = 0  # lines written as streams
            self.left_out = 0  # lines neither streamed nor in the tail
            self._tail.clear()
            self._chars = 0  # in the tail
            self._partial = ""  # the tail's last line, not ended yet
            self.display_id: str | None = None
            self._sent: float | None = None  # when the display was last drawn; None: not yet
            self._dirty = False
            self._timer = None

    def write(self, name: str, text: str) -> None:
        """Show `text` of stream `name`: as a stream while the head has room, else in the tail."""
        with self._lock:
            if self.display_id is None:
                room = self.head - self.streamed
                cut = _after_lines(text, room)
                if cut is None:
                    self.streamed += text.count("\n")
                    self._write(name, text)
                    return
                if cut:
                    self._write(name, text[:cut])
                self.streamed = self.head
                self.display_id = f"split-tail-{secrets.token_hex(6)}"
                text = text[cut:]
            self._add(text)
            self._redraw()

    def flush(self) -> None:
        """Redraw the tail now if a redraw was held back (the run ended)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._dirty:
                self._draw()

    def text(self) -> str:
        """What the tail display shows: the note on what was left out, then the last lines."""
        note = ""
        if self.left_out:
            logs = f"`%split logs {self.run}`" if self.run else "`%split logs RUN` (`%split runs` lists the run)"
            note = f"… {self.left_out:,} lines left out here: {logs} shows them all\n"
        return note + "".join(self._tail) + self._partial

    def _add(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = _short(lines.pop())
        if len(lines) > self.room:  # only the last `room` of them can stay
            self.left_out += len(lines) - self.room
            lines = lines[-self.room:]
        for line in lines:
            line = _short(line) + "\n"
            self._tail.append(line)
            self._chars += len(line)
        while len(self._tail) > self.room:
            self._chars -= len(self._tail.popleft())
            self.left_out += 1
        self._dirty = True

    def _redraw(self) -> None:
        now = self._clock()
        wait = 0.0 if self._sent is None else self._sent + interval(self._chars + len(self._partial)) - now
        if wait <= 0:
            self._draw()
        elif self._timer is None:
            self._timer = threading.Timer(wait, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def _draw(self) -> None:
        self._show({"text/plain": self.text()}, {}, transient={"display_id": self.display_id},
                   **({} if self._sent is None else {"update": True}))
        self._sent, self._dirty = self._clock(), False


def interval(size: int) -> float:
    """The least time between two redraws of a folded cell's display of `size` characters."""
    return min(FOLD_LONGEST, max(FOLD_SHORTEST, size / FOLD_RATE))


def _after_lines(text: str, n: int) -> int | None:
    """The index just after the `n`-th newline of `text`; None where it has fewer than `n + 1`
    (all of it fits); 0 where n <= 0."""
    if n <= 0:
        return 0
    at = -1
    for _ in range(n):
        at = text.find("\n", at + 1)
        if at < 0:
            return None
    return at + 1 if at + 1 < len(text) else None


def _short(line: str) -> str:
    return line if len(line) <= LONG_LINE else line[:LONG_LINE] + f"… ({len(line) - LONG_LINE:,} more characters)"


class NotebookOutput:
    """Replays events into the current cell as if the code had run here. Its text is bounded by
    the config's `[notebook] scrollback` (`Scrollback`); rich output, the result and the error are
    always shown whole."""

    def __init__(self, run: str | None = None, lines: int | None = None) -> None:
        self.result: MimeBundle | None = None
        self.text = Scrollback(lines or scrollback(), _write_stream, _publish)
        self.text.run = run

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if event.get("run"):
            self.text.run = event["run"]
        if kind == "stream":
            self.text.write(event["name"], event["text"])
        elif kind == "status" and event.get("final"):
            self.text.flush()
        elif kind == "display":
            from IPython.display import publish_display_data

            publish_display_data(event["data"], event.get("metadata") or {}, transient=event.get("transient"),
                                 **({"update": True} if event.get("update") else {}))
        elif kind == "clear":
            from IPython.display import clear_output

            self.text.reset()  # what comes next starts a new window
            clear_output(wait=event.get("wait", False))
        elif kind == "result":
            self.result = MimeBundle(event["data"], event.get("metadata"))


def _write_stream(name: str, text: str) -> None:
    stream = sys.stderr if name == "stderr" else sys.stdout
    stream.write(text)
    stream.flush()


def _publish(data: dict[str, Any], metadata: dict[str, Any], **kwargs: Any) -> None:
    from IPython.display import publish_display_data

    publish_display_data(data, metadata, **kwargs)


class TerminalOutput:
    """Events as text: streams as they are, rich output by its text/plain form."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, status: bool = False):
        self.out, self.err, self.status = out or sys.stdout, err or sys.stderr, status
        self.error: dict[str, Any] | None = None  # the run's traceback, once shown

    def flush(self) -> None:
        """Write out what the streams hold (the follower calls it after each batch of records)."""
        self.out.flush()
        self.err.flush()

    def many(self, events: list[dict[str, Any]]) -> None:
        """Show a batch of records in order: each run of stream records on one stream in one write."""
        for stream, run in itertools.groupby(events, key=self._stream_of):
            if stream is None:
                for event in run:
                    self(event)
            else:
                stream.write("".join(event["text"] for event in run))

    def _stream_of(self, event: dict[str, Any]) -> TextIO | None:
        if event["type"] != "stream":
            return None
        return self.err if event["name"] == "stderr" else self.out

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "stream":  # flushed after each batch of records (`flush`), not after each record
            (self.err if event["name"] == "stderr" else self.out).write(event["text"])
        elif kind == "display" and event.get("live"):  # a progress bar: redrawn in place, as it was written
            self.err.write("\r" + event["data"].get("text/plain", "") + ("\n" if event["live"] == "end" else ""))
            self.err.flush()
        elif kind in ("display", "result"):
            text = event["data"].get("text/plain")
            if text:
                print(text, file=self.out)
        elif kind == "error":
            self.error = event
            print("\n".join(event["traceback"]), file=self.err)
        elif kind == "status" and (self.status or event.get("final") and event["state"] != "succeeded"):
            reason = reason_to_show(event.get("reason"), self.error)
            print(f"[{event['state']}]" + (f" ({reason})" if reason else ""), file=self.err)
