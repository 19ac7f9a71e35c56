"""The run panel's way into a long log: `GET runs/RUN/events?tail=` reads the log's last lines back from its
end, and every answer says the window a panel keeps (the config's scrollback, one definition)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_split import core
from jupyter_split.commands.render import LONG_LINE
from jupyter_split.core.outcome import CellOptions
from jupyter_split.runs.events import is_final
from jupyter_split.server.tail import FIRST_TAIL, tail_lines
from tests.fixtures.server import fetch_json
from tests.fixtures.core import write_config

pytest_plugins = ["pytest_jupyter.jupyter_server"]


def _finished(code: str) -> str:
    split = core.get_split()
    run_id = split.execute(code, CellOptions(site="home", detach=True), None, lambda event: None).run_id
    for _ in range(600):
        if any(is_final(e) for e in split.run_tail(run_id, 3)):
            return run_id
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end")


async def test_tail_opens_on_the_logs_last_lines_in_the_configured_window(jp_fetch, split_home: Path) -> None:
    write_config(split_home, '[experiment]\ndefault_remote = "home"\n[sites.home]\njurisdiction = "CN"\n[notebook]\nscrollback = 50\n')
    run_id = await asyncio.to_thread(
        _finished, "import time\nfor i in range(3000):\n    print(f'line-{i}', flush=True)\n"
                   "    if i % 100 == 0: time.sleep(0.06)\n'the end'")

    body = await fetch_json(jp_fetch, "runs", run_id, "events", params={"tail": "window"})
    assert body["window"] == {"lines": 50, "long_line": LONG_LINE}
    events = body["events"]
    text = "".join(e["text"] for e in events if e["type"] == "stream")
    # the window's lines, or as many records (here each print is a record, and the result and status two more)
    assert text.endswith("line-2999\n") and (text.count("\n") >= 50 or len(events) == 50)
    assert events[0]["seq"] > 1, "the tail came from the log's start"
    assert [e["type"] for e in events[-2:]] == ["result", "status"] and is_final(events[-1])
    assert body["run"]["state"] == "succeeded" and body["run"]["last_seq"] == events[-1]["seq"]

    # A number of lines instead of the window's; the ordinary answer says the window too.
    few = (await fetch_json(jp_fetch, "runs", run_id, "events", params={"tail": "3"}))["events"]
    assert len(few) <= 3 and few[-1] == events[-1]
    after = await fetch_json(jp_fetch, "runs", run_id, "events", params={"after": events[-2]["seq"]})
    assert after["events"] == events[-1:] and after["window"]["lines"] == 50

    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", "runs", run_id, "events", params={"tail": "last"})
    assert err.value.code == 400


class _Log:
    """A log of `records` as `Split.run_tail` reads it: the last `count`, each read counted."""

    def __init__(self, records: list[dict[str, Any]]):
        self.records, self.asked = records, []

    def run_tail(self, run_id: str, count: int) -> list[dict[str, Any]]:
        self.asked.append(count)
        return self.records[-count:]


def _lines(n: int, per: int) -> list[dict[str, Any]]:
    return [{"seq": i + 1, "type": "stream", "text": "x\n" * per} for i in range(n)]


def test_tail_lines_reads_back_only_as_far_as_the_lines_go() -> None:
    # Records of 100 lines: the first read back holds the window; nothing more is read.
    log = _Log(_lines(10_000, 100))
    assert len(tail_lines(log, "r", 5000)) == FIRST_TAIL and log.asked == [FIRST_TAIL]

    # Records of one line: more is read back, 4x at a time, up to as many records as lines.
    log = _Log(_lines(10_000, 1))
    found = tail_lines(log, "r", 5000)
    assert len(found) == 5000 and found[-1]["seq"] == 10_000
    assert log.asked == [256, 1024, 4096, 5000]

    # Records that end no line (a progress bar's updates): at most `lines` records all the same.
    log = _Log([{"seq": i + 1, "type": "display", "data": {}} for i in range(10_000)])
    assert len(tail_lines(log, "r", 300)) == 300

    # A short log: all of it, from one read.
    log = _Log(_lines(40, 1))
    assert len(tail_lines(log, "r", 5000)) == 40 and log.asked == [FIRST_TAIL]
