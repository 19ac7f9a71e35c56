"""A line redrawn with "\\r" (a progress bar) is rate-limited on its way to the event log: its first
and last states always, its states between at most once a second, slower as it ages."""
from __future__ import annotations

from jupyter_split.runner.live import LiveLine

WEEK = 7 * 24 * 3600


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bar_redrawn_every_second_for_a_week_is_about_ten_thousand_records():
    clock = Clock()
    line = LiveLine(clock)
    records = line.split("\r0/604800")
    for i in range(1, WEEK):  # one redraw a second: what a capture flush at most sees of a bar at 10 Hz
        clock.now += 1
        records += line.split(f"\r{i}/{WEEK}")
        records += line.due()
    records += line.split(f"\r{WEEK}/{WEEK}\n")
    assert 300 < len(records) <= 11_000, len(records)
    assert records[-1][1]["live"] == "end" and records[-1][1]["data"]["text/plain"] == f"{WEEK}/{WEEK}"
    assert len({r[1]["transient"]["display_id"] for r in records}) == 1


def test_a_state_held_back_is_written_when_its_time_comes_or_the_cell_ends():
    clock = Clock()
    line = LiveLine(clock)
    assert [r[1]["data"]["text/plain"] for r in line.split("\rstep 1")] == ["step 1"]
    clock.now += 0.1
    assert line.split("\rstep 2") == [] and line.due() == []  # held back: too soon
    clock.now += 1
    assert [r[1]["data"]["text/plain"] for r in line.due()] == ["step 2"]  # nothing new written, still shown
    assert line.due() == []
    clock.now += 0.1
    assert line.split("\rstep 3") == []
    assert [r[1]["data"]["text/plain"] for r in line.finish()] == ["step 3"]  # the cell ended


def test_ordinary_lines_pass_whole_and_in_order_around_a_redrawn_line():
    clock = Clock()
    line = LiveLine(clock)
    records = line.split("a\nb\n\r1\r2\r3\nc\n")
    assert records[0] == ("stream", {"text": "a\nb\n"})
    assert records[-1] == ("stream", {"text": "c\n"})
    assert [r[1]["data"]["text/plain"] for r in records[1:-1]] == ["3"]  # drawn and ended in one flush: its last state
