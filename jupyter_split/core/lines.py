"""A run's last N lines, read back from its log's end: what `logs --tail N`, `attach --tail N` and the
sidebar's run panel (`?tail=N`) open on, one rule for all three.

A stream record holds what one flush of the runner's capture took (50 ms of output: one line, a
line's end, or thousands of lines), so a count of records cannot say how many lines it brings. The
log is read back from its end a few records at a time, more while they hold too few lines, and the
first record kept is cut to the lines asked for. A record that is not text (a result, a display, an
error, a status) counts as one line: it is one thing to show.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

Records = list[dict[str, Any]]

#: the records first read back from a log's end; 4x as many again while they hold too few lines
FIRST_TAIL = 256


def record_lines(event: dict[str, Any]) -> int:
    """The lines a record shows: a stream record's line ends, any other record one."""
    return event["text"].count("\n") if event.get("type") == "stream" else 1


def text_lines(events: Records) -> int:
    """The lines `events` show, as `record_lines` counts them."""
    return sum(record_lines(e) for e in events)


async def tail_lines(read: Callable[[int], Awaitable[Records]], lines: int) -> Records:
    """The log's last records that show `lines` lines (see `last_lines`), `read(count)` giving the log's
    last `count` records. It asks for more records until they hold enough lines, the log's start is
    reached, or `lines` records came (a bar's updates end no line, yet `lines` of them are as many
    things to show): what is read stays within 4x what is shown, never the log from its start."""
    if lines <= 0:
        return []
    count = min(lines, FIRST_TAIL)
    while True:
        events = await read(count)
        if len(events) < count or count >= lines or text_lines(events) >= lines:
            return last_lines(events, lines)
        count = min(lines, count * 4)


def last_lines(events: Records, lines: int) -> Records:
    """The end of `events` that shows their last `lines` lines, as `tail -n` would: whole records from
    the end and, of the first one kept, the text from the start of its line. A line's start in an
    earlier record (a print split across two flushes) is kept with it."""
    kept: Records = []
    room = lines
    for event in reversed(events):
        if event.get("type") != "stream":
            if room == 0:
                break
            kept.append(event)
            room -= 1
            continue
        text = event["text"]
        ends = text.count("\n")
        if ends <= room:  # the whole record shows; with no room left it is the kept line's start
            kept.append(event)
            room -= ends
            continue
        cut = 0
        for _ in range(ends - room):
            cut = text.index("\n", cut) + 1
        if cut < len(text):
            kept.append({**event, "text": text[cut:]})
        break
    kept.reverse()
    return kept
