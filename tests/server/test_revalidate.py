"""A poll that nothing changed: every GET the sidebar polls carries an ETag and Cache-Control: no-cache,
and answers 304 with no body to its own ETag; runs, sites and border answer it without building the body,
and any change (a row, a run's log, an audit line) shows at the next poll."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_split import core, policy
from jupyter_split.core.outcome import CellOptions
from jupyter_split.runs.index import RunIndex, RunRecord
from jupyter_split.server import routes
from tests.fixtures.core import write_config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

POLLED = ("runs", "sites", "checkpoints", "wandb", "border", "states")


async def _poll(jp_fetch, route: str, etag: str | None = None, **params: str):
    headers = {"If-None-Match": etag} if etag else {}
    return await jp_fetch("jupyter-split", route, headers=headers, params=params, raise_error=False)


def _counting(monkeypatch: pytest.MonkeyPatch, split: Any, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(split, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(split, name, counted)
    return calls


@pytest.mark.parametrize("route", POLLED)
async def test_an_unchanged_poll_is_a_304_without_a_body(jp_fetch, route: str) -> None:
    first = await _poll(jp_fetch, route)
    assert first.code == 200 and first.body
    etag = first.headers["Etag"]
    assert etag and first.headers["Cache-Control"] == "no-cache"
    again = await _poll(jp_fetch, route, etag)
    assert again.code == 304 and again.body == b"" and again.headers["Etag"] == etag
    other = await _poll(jp_fetch, route, '"not-this-one"')
    assert other.code == 200 and other.body == first.body


async def test_runs_answer_from_the_index_version_and_show_each_change(jp_fetch, monkeypatch) -> None:
    split = core.get_split()
    listed = _counting(monkeypatch, split, "list_runs")
    first = await _poll(jp_fetch, "runs")
    etag = first.headers["Etag"]
    for _ in range(3):
        assert (await _poll(jp_fetch, "runs", etag)).code == 304
    assert len(listed) == 1, "an unchanged poll built the runs page again"

    split.index.add(RunRecord(run_id="split-demo-home-20260101-000000-abcdef", site="home", run_dir="/nowhere",
                              mode="detached", state="succeeded"))
    changed = await _poll(jp_fetch, "runs", etag)
    assert changed.code == 200 and changed.headers["Etag"] != etag
    [row] = json.loads(changed.body)["runs"]
    assert row["state"] == "succeeded"
    split.index.update(row["run_id"], last_line="the end")
    again = await _poll(jp_fetch, "runs", changed.headers["Etag"])
    assert again.code == 200 and json.loads(again.body)["runs"][0]["last_line"] == "the end"
    # Another query is another answer; a bad one is still a 400.
    assert (await _poll(jp_fetch, "runs", again.headers["Etag"], site="abroad")).code == 200
    assert (await _poll(jp_fetch, "runs", limit="0")).code == 400


async def test_a_running_runs_log_is_followed_by_every_poll(jp_fetch) -> None:
    code = "import time\nprint('working', flush=True)\ntime.sleep(1.5)\nprint('done', flush=True)"
    run_id = await asyncio.to_thread(
        lambda: core.get_split().execute(code, CellOptions(site="home", detach=True), None, lambda e: None).run_id)
    etag, states, deadline = None, [], time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = await _poll(jp_fetch, "runs", etag)
        if answer.code == 200:
            etag = answer.headers["Etag"]
            [row] = [r for r in json.loads(answer.body)["runs"] if r["run_id"] == run_id]
            states.append(row["state"])
            if row["state"] == "succeeded":
                break
        await asyncio.sleep(0.2)
    assert states[-1] == "succeeded" and row["last_line"] == "done", states
    assert (await _poll(jp_fetch, "runs", etag)).code == 304  # ended: the index's version answers again


async def test_sites_are_probed_once_per_interval(jp_fetch, monkeypatch) -> None:
    probed = _counting(monkeypatch, core.get_split(), "sites")
    first = await _poll(jp_fetch, "sites")
    assert (await _poll(jp_fetch, "sites", first.headers["Etag"])).code == 304
    assert len(probed) == 1
    monkeypatch.setattr(routes, "SITES_FRESH", 0.0)
    assert (await _poll(jp_fetch, "sites", first.headers["Etag"])).code == 304  # probed again, found the same
    assert len(probed) == 2


async def test_border_shows_a_new_audit_line_at_the_next_poll(jp_fetch) -> None:
    first = await _poll(jp_fetch, "border")
    assert (await _poll(jp_fetch, "border", first.headers["Etag"])).code == 304
    await asyncio.to_thread(policy.declassify, "ckpts/x", "approved: DPO-1", config=core.get_split().config)
    changed = await _poll(jp_fetch, "border", first.headers["Etag"])
    assert changed.code == 200 and json.loads(changed.body)["counts"]["declassified"] == 1


def test_the_index_version_moves_with_every_write_and_only_then(tmp_path: Path) -> None:
    index = RunIndex(tmp_path / "index.sqlite")
    seen = [index.version()]
    index.add(RunRecord(run_id="r1", site="home", run_dir="/r/1", mode="detached", state="running"))
    seen.append(index.version())
    before = index.get("r1").updated
    index.update("r1", state="running", last_seq=0, last_line="")  # what a refresh that found nothing new writes
    assert index.version() == seen[-1] and index.get("r1").updated == before
    index.update("r1", state="succeeded")
    seen.append(index.version())
    other = RunIndex(tmp_path / "index.sqlite")  # another connection, as another process writes
    other.prune(time.time() + 1)
    seen.append(index.version())
    assert len(set(seen)) == 4 and index.list() == []


async def test_a_new_config_is_probed_at_once(jp_fetch, split_home: Path) -> None:
    first, before = await _poll(jp_fetch, "sites"), await _poll(jp_fetch, "border")
    write_config(split_home, '[experiment]\nname = "renamed"\nhome = "home"\ndefault_remote = "home"\n'
                             '[sites.home]\njurisdiction = "CN"\n')
    changed = await _poll(jp_fetch, "sites", first.headers["Etag"])
    assert changed.code == 200 and json.loads(changed.body)["experiment"]["name"] == "renamed"
    border = await _poll(jp_fetch, "border", before.headers["Etag"])
    assert border.code == 200 and [s["name"] for s in json.loads(border.body)["policy"]["sites"]] == ["home"]
