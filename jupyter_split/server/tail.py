"""What the sidebar's run panel needs to show a run of any length in bounded memory: the log's tail
to open on, and the window it keeps.

The panel folds records into a window the same size as a notebook cell's (`[notebook] scrollback`,
`commands/render.Scrollback`), so the size is given here, from the config, and the panel keeps no
number of its own. It opens on the log's last lines rather than replaying from `seq` 0: a week's
log would otherwise cross the wire, and the browser, whole before the panel showed its end.
"""
from __future__ import annotations

from typing import Any

from ..commands.render import LONG_LINE

#: the records first read back from a log's end when looking for its last lines; read 4x as many
#: again while they hold too few lines (a log of short records, or a tail of progress updates)
FIRST_TAIL = 256


def window(split: Any) -> dict[str, int]:
    """The window a run panel keeps, as a notebook cell does: `lines` of text (the config's
    `[notebook] scrollback`) and lines cut past `long_line` characters (the log keeps them whole)."""
    return {"lines": split.config.notebook.scrollback, "long_line": LONG_LINE}


def tail_lines(split: Any, run_id: str, lines: int) -> list[dict[str, Any]]:
    """The log's last records that hold `lines` lines of text, and at most `lines` records: read back
    from the end with `Split.run_tail` (as `logs --tail` reads), never from the log's start.

    A stream record may hold one line or thousands (the runner batches 50 ms of output), so a count of
    records cannot say how many lines it brings: ask for more records until they hold enough lines,
    the log's start is reached, or `lines` records came (displays, a bar's updates: a record is at least
    one thing to show, so `lines` of them fill a window too). What is read stays within 4x the answer."""
    count = min(lines, FIRST_TAIL)
    while True:
        events = split.run_tail(run_id, count)
        if len(events) < count or count >= lines or text_lines(events) >= lines:
            return events
        count = min(lines, count * 4)


def text_lines(events: list[dict[str, Any]]) -> int:
    """The lines of text the stream records among `events` hold."""
    return sum(e["text"].count("\n") for e in events if e.get("type") == "stream")
