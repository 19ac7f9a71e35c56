"""Runs beyond the newest page: GET runs pages by `created` (`before`, and `next` in each answer), filters
and all, each page read off the index as the first is; the first page still revalidates; the events and
runs routes bound their `limit`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_split import core
from jupyter_split.runs.index import RunRecord

pytest_plugins = ["pytest_jupyter.jupyter_server"]

COUNT = 130


@pytest.fixture
def ended_runs(split_home: Path) -> list[str]:
    """`COUNT` ended runs written straight into the run index, newest last, one second apart."""
    index = core.get_split().index
    ids = []
    for i in range(COUNT):
        run_id = f"split-demo-{('home', 'abroad')[i % 2]}-20260101-{i:06d}-{i:06x}"
        index.add(RunRecord(run_id=run_id, site=("home", "abroad")[i % 2], run_dir=f"/nowhere/{i}", mode="detached",
                            state=("succeeded", "failed")[i % 3 == 0], created=1_767_225_600.0 + i + 0.125 * (i % 7),
                            updated=1_767_225_700.0 + i))
        ids.append(run_id)
    return ids


async def _page(jp_fetch, **params: Any) -> dict[str, Any]:
    response = await jp_fetch("jupyter-split", "runs", params={k: str(v) for k, v in params.items()})
    return json.loads(response.body)


async def _all_pages(jp_fetch, **params: Any) -> list[list[str]]:
    pages, before = [], None
    while True:
        page = await _page(jp_fetch, **params, **({"before": before} if before is not None else {}))
        pages.append([r["run_id"] for r in page["runs"]])
        if page["next"] is None:
            return pages
        assert page["next"] == page["runs"][-1]["created"]  # the cursor is the last row's `created`, as sent
        before = page["next"]


async def test_pages_reach_every_run_once_newest_first(jp_fetch, ended_runs: list[str]) -> None:
    pages = await _all_pages(jp_fetch)
    assert [len(p) for p in pages] == [50, 50, 30]
    assert sum(pages, []) == ended_runs[::-1]
    # a page of exactly the rest says there is none after it
    assert (await _page(jp_fetch, limit=COUNT))["next"] is None
    assert (await _page(jp_fetch, limit=COUNT - 1))["next"] is not None


async def test_pages_keep_the_filters(jp_fetch, ended_runs: list[str]) -> None:
    failed_abroad = [r for i, r in enumerate(ended_runs) if i % 2 and i % 3 == 0][::-1]
    pages = await _all_pages(jp_fetch, site="abroad", state="failed", limit=7)
    assert sum(pages, []) == failed_abroad and max(len(p) for p in pages) == 7
    # the text filter pages too: the ids holding "-2026" are all of them
    assert sum(await _all_pages(jp_fetch, q="-2026", limit=40), []) == ended_runs[::-1]


async def test_the_first_page_still_revalidates(jp_fetch, ended_runs: list[str]) -> None:
    first = await jp_fetch("jupyter-split", "runs")
    again = await jp_fetch("jupyter-split", "runs", headers={"If-None-Match": first.headers["Etag"]}, raise_error=False)
    assert again.code == 304 and again.body == b""
    assert json.loads(first.body)["next"] is not None


@pytest.mark.parametrize(("route", "params", "words"), [
    (("runs",), {"before": "yesterday"}, "before='yesterday' is not a time"),
    (("runs",), {"before": "nan"}, "is not a time"),
    (("runs",), {"before": "inf"}, "is not a time"),
    (("runs",), {"limit": "1001"}, "limit=1001 is above 1000; give 1000 or less"),
    (("runs", "split-demo-home-20260101-000000-000000", "events"), {"limit": "2001"},
     "limit=2001 is above 2000; give 2000 or less"),
    (("runs", "split-demo-home-20260101-000000-000000", "events"), {"limit": "0"}, "below 1"),
])
async def test_bad_paging_arguments_are_400s_that_say_the_bound(jp_fetch, ended_runs, route, params, words) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", *route, params=params)
    assert err.value.code == 400
    assert words in json.loads(err.value.response.body)["message"]
