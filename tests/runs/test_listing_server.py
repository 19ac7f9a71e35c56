"""The sidebar's listing (GET /jupyter-split/runs) over an index file an older version wrote, through a
real jupyter_server."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.runs.test_index import _old_index

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(split_home: Path) -> dict[str, Any]:
    ids = [f"exp-{('home', 'abroad')[i % 2]}-20260101-{i:06d}-{i * 40503 % 16777216:06x}" for i in range(2000)]
    (split_home / "data").mkdir()
    _old_index(split_home / "data" / "index.sqlite", ids)
    return {"ServerApp": {"jpserver_extensions": {"jupyter_split": True}}}


async def test_the_listing_of_an_older_index_file_is_the_newest_runs_and_the_file_gets_its_indexes(jp_fetch, split_home):
    response = await jp_fetch("jupyter-split", "runs", params={"limit": "5"})
    rows = json.loads(response.body)["runs"]
    assert [r["run_id"][:-7] for r in rows] == [f"exp-{('home', 'abroad')[i % 2]}-20260101-{i:06d}" for i in range(1999, 1994, -1)]
    assert all("rev_id" not in r and "handle" not in r for r in rows)
    response = await jp_fetch("jupyter-split", "runs", params={"limit": "3", "site": "abroad"})
    assert [r["run_id"][:-7] for r in json.loads(response.body)["runs"]] == [
        "exp-abroad-20260101-001999", "exp-abroad-20260101-001997", "exp-abroad-20260101-001995"]
    db = sqlite3.connect(split_home / "data" / "index.sqlite")
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"runs_by_created", "runs_by_site", "runs_by_state", "runs_by_rev_id"} <= names
