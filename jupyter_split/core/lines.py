"""A run's last N lines, read back from its log's end: what `logs --tail N`, `attach --tail N` and the
sidebar's run panel (`?tail=N`) open on, one rule for all three.

A stream record holds what one flush of the runner's capture took (50 ms of output: one line, a
line's end, or thousands of lines), so a count of records cannot say how many lines it brings. The
log is read back from its end a few records at a time, more while they hold too few lines; `logs`
and `attach` cut the first record kept to the lines asked for, while the run panel takes the records
whole (it keeps the first half of its window as printed and the rest as a tail, as a notebook cell). A record that is not text (a result, a display, an
error, a status) counts as one line: it is one thing to show.
"""
from __future__ import annotations

from typing import Any, Callable

Records = list[dict[str, Any]]

#: the records first read back from a log's end; 4x as many again while they hold too few lines
FIRST_TAIL = 256
#: the most records read back for each line asked for
READ_BACK = 4


def record_lines(event: dict[str, Any]) -> int:
    """The lines a record shows: a stream record's line ends, any other record one."""
    return event["text"].count("\n") if event.get("type") == "stream" else 1


def text_lines(events: Records) -> int:
    """The lines `events` show, as `record_lines` counts them."""
    return sum(record_lines(e) for e in events)


def tail_records(read: Callable[[int], Records], lines: int) -> Records:
    """The fewest of the log's last records that hold its last `lines` lines, each whole (the run panel's
    way in), `read(count)` giving the log's last `count` records."""
    return last_lines(_read_back(read, lines), lines, cut=False)


def tail_lines(read: Callable[[int], Records], lines: int) -> Records:
    """The log's records that show its last `lines` lines, as `tail -n` would (`logs`, `attach`): the
    first record kept cut to them (`last_lines`)."""
    return last_lines(_read_back(read, lines), lines)


def _read_back(read: Callable[[int], Records], lines: int) -> Records:
    """The log's last records, as many as hold more line ends than `lines` (so the first line's start is
    among them too), or the whole log. It asks for 4x as many records while they hold too few lines, and
    for no more than `READ_BACK` records a line (a print split across flushes, or `print(..., end="")`,
    ends no line in some records): what is read stays within a few times what is shown, never the log
    from its start."""
    if lines <= 0:
        return []
    most = READ_BACK * lines
    count = min(lines, FIRST_TAIL)
    while True:
        events = read(count)
        if len(events) < count or count >= most or text_lines(events) > lines:
            return events
        count = min(most, count * 4)


def last_lines(events: Records, lines: int, cut: bool = True) -> Records:
    """The end of `events` that shows their last `lines` lines, as `tail -n` would: whole records from
    the end and, of the first one kept, the text from the start of its line (all of it where not `cut`).
    A line's start in an earlier record (a print split across two flushes) is kept with it."""
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
        start = 0
        for _ in range(ends - room):
            start = text.index("\n", start) + 1
        if start < len(text):
            kept.append({**event, "text": text[start:]} if cut else event)
        break
    kept.reverse()
    return kept
