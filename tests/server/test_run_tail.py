"""The run panel's way into a long log: `GET runs/RUN/events?tail=` reads the log's last lines back from its
end, and every answer says the window a panel keeps (the config's scrollback, one definition)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_split import core
from jupyter_split.commands.render import LONG_LINE
from jupyter_split.core.outcome import CellOptions
from jupyter_split.runs.events import is_final
from jupyter_split.core.lines import text_lines
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
    # the fewest records that hold the window's last 50 lines (the result and the status two of them), whole
    assert text.endswith("line-2999\n") and text_lines(events) >= 50 and text_lines(events[1:]) < 50
    assert events[0]["seq"] > 1, "the tail came from the log's start"
    assert [e["type"] for e in events[-2:]] == ["result", "status"] and is_final(events[-1])
    assert body["run"]["state"] == "succeeded" and body["run"]["last_seq"] == events[-1]["seq"]

    # A number of lines instead of the window's; the ordinary answer says the window too.
    few = (await fetch_json(jp_fetch, "runs", run_id, "events", params={"tail": "3"}))["events"]
    assert few[-1] == events[-1] and text_lines(few) >= 3 and text_lines(few[1:]) < 3
    after = await fetch_json(jp_fetch, "runs", run_id, "events", params={"after": events[-2]["seq"]})
    assert after["events"] == events[-1:] and after["window"]["lines"] == 50

    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", "runs", run_id, "events", params={"tail": "last"})
    assert err.value.code == 400
