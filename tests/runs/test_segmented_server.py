"""The sidebar's events endpoint (GET /jupyter-split/runs/RUN/events) over a run whose log rolls into
many segments, through a real jupyter_server and a real runner: polled while the runner rolls,
each answer only what came after the last seq, nothing lost or doubled across a boundary."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_split import core
from jupyter_split.core import CellOptions
from tests.fixtures.core import write_config
from tests.runs.test_segmented_runs import CELL, CONFIG, LINES, _segment_starts, _steps

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(split_home: Path) -> dict[str, Any]:
    write_config(split_home, CONFIG)
    return {"ServerApp": {"jpserver_extensions": {"jupyter_split": True}}}


async def _events(jp_fetch, run_id: str, after: int, limit: int) -> dict[str, Any]:
    response = await jp_fetch("jupyter-split", "runs", run_id, "events", params={"after": after, "limit": limit})
    return json.loads(response.body)


async def test_the_events_endpoint_pages_a_rolling_log_from_the_last_seq(jp_fetch) -> None:
    split = core.get_split()
    outcome = await asyncio.to_thread(split.execute, CELL, CellOptions(site="home", detach=True), None, lambda e: None)
    run_id, got, after = outcome.run_id, [], 0
    for _ in range(3000):  # the panel's polling: from the last seq it has, while the runner writes and rolls
        body = await _events(jp_fetch, run_id, after, 60)
        got += body["events"]
        after = got[-1]["seq"] if got else 0
        if body["run"]["state"] == "succeeded" and not body["events"]:
            break
        await asyncio.sleep(0.01)
    assert [e["seq"] for e in got] == list(range(1, got[-1]["seq"] + 1)), "every record once, in order"
    assert _steps(got) == [f"step-{i}-end" for i in range(LINES)] and got[-1]["state"] == "succeeded"
    assert body["run"]["last_seq"] == got[-1]["seq"]

    starts = _segment_starts(Path(split.index.get(run_id).run_dir))
    assert len(starts) > 40
    for first in (starts[0], starts[17], starts[-1]):  # a page that starts before a segment and ends in the next
        page = (await _events(jp_fetch, run_id, first - 3, 6))["events"]
        assert page == got[first - 3:first + 3]
