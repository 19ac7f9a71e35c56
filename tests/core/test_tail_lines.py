"""`--tail N`, `attach --tail N` and the run panel's `?tail=N` open on a log's last N lines, one rule for
all (`core.lines`): read back from the log's end only as far as the lines go (the panel takes those
records whole), and for `logs` and `attach` the first record kept cut to them, whatever records hold
the lines (a print split across two flushes, a record of many)."""
from __future__ import annotations

from typing import Any

from jupyter_split.core.lines import FIRST_TAIL, READ_BACK, last_lines, tail_lines, tail_records, text_lines


class _Log:
    """A log of `records` read back from its end as `replay.tail` reads it, each read counted."""

    def __init__(self, records: list[dict[str, Any]]):
        self.records, self.asked = records, []

    def read(self, count: int) -> list[dict[str, Any]]:
        self.asked.append(count)
        return self.records[-count:]

    def tail(self, lines: int) -> list[dict[str, Any]]:
        return tail_lines(self.read, lines)


def _stream(*texts: str) -> list[dict[str, Any]]:
    return [{"seq": i + 1, "type": "stream", "name": "stdout", "text": t} for i, t in enumerate(texts)]


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "stream")


def test_tail_lines_reads_back_only_as_far_as_the_lines_go() -> None:
    # Records of 100 lines: the first read back holds the lines; nothing more is read, and the first
    # record kept is cut to them.
    log = _Log(_stream(*["x\n" * 100] * 10_000))
    found = log.tail(5000)
    assert log.asked == [FIRST_TAIL] and text_lines(found) == 5000 and len(found) == 50

    # Records of one line: more is read back, 4x at a time, until they hold more lines than asked for
    # (the first line's start is then among them).
    log = _Log(_stream(*[f"{i}\n" for i in range(30_000)]))
    found = log.tail(5000)
    assert _text(found).splitlines() == [str(i) for i in range(25_000, 30_000)]
    assert log.asked == [256, 1024, 4096, 16384]

    # Records that end no line (a print with end=""): no more than READ_BACK records a line asked for.
    log = _Log(_stream(*["."] * 10_000))
    assert len(tail_records(log.read, 300)) == READ_BACK * 300 and log.asked == [256, 1024, 1200]

    # Records that are no text (a progress bar's updates): `lines` of them, each one thing to show.
    log = _Log([{"seq": i + 1, "type": "display", "data": {}} for i in range(10_000)])
    assert len(log.tail(300)) == 300

    # A short log: all of it, from one read; no lines asked, nothing read.
    log = _Log(_stream(*["x\n"] * 40))
    assert len(log.tail(5000)) == 40 and log.asked == [FIRST_TAIL]
    assert log.tail(0) == [] and log.asked == [FIRST_TAIL]


def test_a_first_line_split_across_flushes_is_read_back_whole() -> None:
    # 150 lines asked for, each print flushed in two records: 150 records hold only 75 line ends, and the
    # first line's start is in the record before the one that ends it.
    log = _Log(_stream(*[part for i in range(1000) for part in (f"step-{i}-", "end\n")]))
    found = log.tail(150)
    assert _text(found).splitlines() == [f"step-{i}-end" for i in range(850, 1000)]
    assert found[0]["text"] == "step-850-"


def test_the_first_record_kept_is_cut_to_the_lines_asked_for() -> None:
    events = _stream("a\nb\nc\n", "d\ne\n") + [{"seq": 3, "type": "status", "state": "succeeded", "final": True}]
    kept = last_lines(events, 4)
    assert _text(kept) == "c\nd\ne\n" and kept[-1]["type"] == "status"
    assert kept[0]["seq"] == 1 and events[0]["text"] == "a\nb\nc\n", "the log's record is left as it was"
    assert last_lines(events, 4, cut=False) == events, "the panel's way: the fewest records, whole"
    assert last_lines(events, 3, cut=False) == events[1:]
    assert last_lines(events, 1) == events[-1:]
    assert last_lines(events, 100) == events
    assert last_lines(events, 0) == []


def test_a_line_split_across_records_comes_whole() -> None:
    # A print flushed in two parts: its start is in the record before the one that ends it.
    events = _stream("one\ntw", "o\nthr", "ee\n")
    assert _text(last_lines(events, 1)) == "three\n"
    assert _text(last_lines(events, 2)) == "two\nthree\n"
    events = _stream("zero\n", "o", "n", "e\n")  # a line in three records
    assert _text(last_lines(events, 1)) == "one\n"
    assert [e["seq"] for e in last_lines(events, 1)] == [2, 3, 4]
