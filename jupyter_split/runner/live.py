"""Carriage-return updates of a line (tqdm's bar, `print(..., end="\\r")`) as one display updated in place.

A terminal redraws such a line; a notebook shows tqdm as a live bar. Text written to a remote
cell's stdout or stderr passes through `LiveLine.split`: ordinary lines stay a stream, and a line
that is rewritten with "\\r" becomes a display with a display_id, updated in place, then left as
it was last drawn when its "\\n" comes.

What reaches the event log of a redrawn line is rate-limited, so that a bar redrawn ten times
a second for a week is thousands of records, not millions. The rule (`interval`):
  - its first state is written at once (the bar appears);
  - while it changes, its latest state is written at most once per `interval(age)`: once a
    second at first, then slower as the bar ages (its age / 60, up to once a minute), so that
    a bar of a minute is ~60 records, of an hour ~300, of a week ~10,000, and a reader sees a
    state never older than a minute nor than a sixtieth of the bar's life;
  - a state held back is written when its time comes even if nothing more is written
    (`due`, called by the capture's flusher), so a bar that stops changing shows its last state;
  - its final state is always written: when the line ends ("\\n") and when the cell ends (`finish`).
Only the intermediate states of a redrawn line are skipped; ordinary lines are streams, never
dropped, held or reordered.
"""
from __future__ import annotations

import html
import re
import secrets
import time
from typing import Any, Callable

PERCENT = re.compile(r"(\d{1,3})%\|")

#: a redrawn line's states are written at most this often at first, in seconds ...
FIRST_INTERVAL = 1.0
#: ... then at most every age / AGE_FRACTION seconds ...
AGE_FRACTION = 60.0
#: ... but at least once this often while it changes
LAST_INTERVAL = 60.0

Record = tuple[str, dict[str, Any]]


def interval(age: float) -> float:
    """The least time between two written states of a line redrawn for `age` seconds."""
    return min(LAST_INTERVAL, max(FIRST_INTERVAL, age / AGE_FRACTION))


class LiveLine:
    """The line a stream is redrawing, if any, and the display that shows it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget the line (a new run starts with none)."""
        self.display_id: str | None = None
        self.text = ""
        self.shown: str | None = None
        self.at_start = False  # the last character was "\r": what comes next overwrites the line
        self.born = 0.0  # when the line was first drawn
        self.sent = 0.0  # when its state was last written

    def split(self, text: str) -> list[Record]:
        """`text` as records in order: ("stream", {"text"}) and ("display", {display fields})."""
        if self.display_id is None and "\r" not in text:
            return [("stream", {"text": text})]  # the common case, untouched
        records: list[Record] = []
        plain: list[str] = []
        pieces = text.replace("\r\n", "\n").split("\n")
        for i, piece in enumerate(pieces):
            ended = i < len(pieces) - 1
            if self.display_id is None and "\r" not in piece:
                plain.append(piece + "\n" if ended else piece)
                continue
            if plain:
                records.append(("stream", {"text": "".join(plain)}))
                plain = []
            self._draw(piece)
            records.extend(self._display(ended))
        if "".join(plain):
            records.append(("stream", {"text": "".join(plain)}))
        return records

    def due(self) -> list[Record]:
        """The line's latest state if it was held back and its time has come, else nothing."""
        if self.display_id is None or self.text == self.shown:
            return []
        now = self.clock()
        return [self._record(update=True, live=True)] if now - self.sent >= interval(now - self.born) else []

    def finish(self) -> list[Record]:
        """The line's latest state if it was held back (the cell ends), then forget the line."""
        records = [self._record(update=True, live=True)] if self.display_id and self.text != self.shown else []
        self.reset()
        return records

    def _draw(self, piece: str) -> None:
        for j, part in enumerate(piece.split("\r")):
            if j:
                self.at_start = True
            if part:
                self.text = part if self.at_start else self.text + part
                self.at_start = False

    def _display(self, ended: bool) -> list[Record]:
        first = self.display_id is None
        now = self.clock()
        if first:
            self.display_id = f"split-live-{secrets.token_hex(6)}"
            self.born = now
        records: list[Record] = []
        if first or ended or (self.text != self.shown and now - self.sent >= interval(now - self.born)):
            records.append(self._record(update=not first, live="end" if ended else True))
        if ended:
            self.reset()
        return records

    def _record(self, update: bool, live: Any) -> Record:
        fields: dict[str, Any] = {"data": bundle(self.text), "metadata": {},
                                  "transient": {"display_id": self.display_id}, "live": live}
        if update:
            fields["update"] = True
        self.shown, self.sent = self.text, self.clock()
        return ("display", fields)


def bundle(line: str) -> dict[str, str]:
    """The line as text, and as a progress bar where it is one (tqdm's `NN%|`)."""
    data = {"text/plain": line}
    percent = PERCENT.search(line)
    if percent:
        data["text/html"] = (f"<progress value='{min(int(percent.group(1)), 100)}' max='100'></progress> "
                             f"<code>{html.escape(line.strip())}</code>")
    return data
