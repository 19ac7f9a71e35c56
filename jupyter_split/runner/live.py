"""Carriage-return updates of a line (tqdm's bar, `print(..., end="\\r")`) as one display updated in place.

A terminal redraws such a line; a notebook shows tqdm as a live bar. Text written to a remote
cell's stdout or stderr passes through `LiveLine.split`: ordinary lines stay a stream, and a line
that is rewritten with "\\r" becomes a display with a display_id, updated at most once a flush
(the capture flushes every 50 ms), then left as it was last drawn when its "\\n" comes.
"""
from __future__ import annotations

import html
import re
import secrets
from typing import Any

PERCENT = re.compile(r"(\d{1,3})%\|")

Record = tuple[str, dict[str, Any]]


class LiveLine:
    """The line a stream is redrawing, if any, and the display that shows it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the line (a new run starts with none)."""
        self.display_id: str | None = None
        self.text = ""
        self.shown: str | None = None
        self.at_start = False  # the last character was "\r": what comes next overwrites the line

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

    def _draw(self, piece: str) -> None:
        for j, part in enumerate(piece.split("\r")):
            if j:
                self.at_start = True
            if part:
                self.text = part if self.at_start else self.text + part
                self.at_start = False

    def _display(self, ended: bool) -> list[Record]:
        first = self.display_id is None
        if first:
            self.display_id = f"split-live-{secrets.token_hex(6)}"
        records: list[Record] = []
        if first or self.text != self.shown or ended:
            fields: dict[str, Any] = {"data": bundle(self.text), "metadata": {},
                                      "transient": {"display_id": self.display_id},
                                      "live": "end" if ended else True}
            if not first:
                fields["update"] = True
            records.append(("display", fields))
            self.shown = self.text
        if ended:
            self.reset()
        return records


def bundle(line: str) -> dict[str, str]:
    """The line as text, and as a progress bar where it is one (tqdm's `NN%|`)."""
    data = {"text/plain": line}
    percent = PERCENT.search(line)
    if percent:
        data["text/html"] = (f"<progress value='{min(int(percent.group(1)), 100)}' max='100'></progress> "
                             f"<code>{html.escape(line.strip())}</code>")
    return data
