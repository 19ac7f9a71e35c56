"""The runs pane over an index of 5,000 runs in a real JupyterLab and Chromium: the newest page, older
pages by keyboard, a bounded number of rows in the page however far back, and the filters over it all."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from jupyter_split.paths import index_path
from jupyter_split.runs.index import RunIndex

from .conftest import Lab, shot, widen_sidebar
from .test_sidebar import _open_lab, _open_sidebar

pytestmark = pytest.mark.slow

COUNT = 5000
#: the rows the pane holds at most: 4 pages of 50 (src/runpages.ts MAX_PAGES)
MOST_ROWS = 200


def _run_id(i: int) -> str:
    return f"split-demo-{('home', 'abroad')[i % 2]}-20260101-{i:06d}-{i:06x}"


@pytest.fixture
def many_runs(split_home: Path) -> None:
    """`COUNT` ended runs over the last 30 days, written straight into the run index (run `COUNT - 1` the
    newest), as `benchmarks/bench_sidebar.py` fills one."""
    path = index_path()
    RunIndex(path)
    now = time.time()
    rows = []
    for i in range(COUNT):
        created = now - (COUNT - i) * 30 * 86400 / COUNT
        run_id = _run_id(i)
        rows.append((run_id, ("home", "abroad")[i % 2], ("succeeded", "failed", "cancelled")[i % 3],
                     f"/nowhere/{run_id}", "detached", created, created + 60, f"epoch {i}", run_id[::-1]))
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO runs (run_id, site, state, run_dir, mode, created, updated, last_line, rev_id) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


def test_runs_pane_pages_back_through_5000_runs_with_a_bounded_dom(many_runs, page, lab: Lab) -> None:
    from playwright.sync_api import expect

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    pane = sidebar.locator(".jp-split-section[data-section='runs']")
    rows = pane.locator(".jp-split-run")

    # The newest page: 50 runs, the newest first, and a way further back.
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-run-id", _run_id(COUNT - 1))
    expect(rows.last).to_have_attribute("data-run-id", _run_id(COUNT - 50))
    expect(pane).to_contain_text("Runs 1–50, newest first")
    older = pane.get_by_role("button", name="Show older runs")
    expect(pane.get_by_role("group", name="Older runs")).to_be_visible()

    # By keyboard: Enter on "Show older runs" brings the next 50, and the focus stays on it.
    older.focus()
    page.keyboard.press("Enter")
    expect(rows).to_have_count(100)
    expect(rows.last).to_have_attribute("data-run-id", _run_id(COUNT - 100))
    expect(older).to_be_focused()
    for shown in (150, 200):
        page.keyboard.press("Enter")
        expect(rows).to_have_count(shown)

    # Further back, the page holds no more rows: the newest shown go, and "newer" comes back for them.
    for step in range(1, 5):
        page.keyboard.press("Enter")
        expect(rows.first).to_have_attribute("data-run-id", _run_id(COUNT - 1 - 50 * step))
        assert rows.count() <= MOST_ROWS
    expect(rows).to_have_count(MOST_ROWS)
    expect(rows.last).to_have_attribute("data-run-id", _run_id(COUNT - 400))
    expect(pane).to_contain_text("Runs 201–400, newest first")
    assert page.locator("#jupyter-split-sidebar li").count() <= MOST_ROWS + 20  # the whole sidebar's rows
    widen_sidebar(page)
    pane.locator(".jp-split-toggle").evaluate("head => head.scrollIntoView({block: 'start'})")
    shot(sidebar, "runs-older")  # the sidebar as it shows: the pane's heading, its filters, newer, the rows

    newer = pane.get_by_role("button", name="Show newer runs")
    newer.focus()
    page.keyboard.press("Enter")
    expect(rows.first).to_have_attribute("data-run-id", _run_id(COUNT - 151))
    expect(rows.last).to_have_attribute("data-run-id", _run_id(COUNT - 350))
    pane.get_by_role("button", name="Show the newest runs").click()
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-run-id", _run_id(COUNT - 1))
    expect(pane.get_by_role("button", name="Show newer runs")).to_have_count(0)

    # The filters reach the whole index: the oldest run by a part of its id, far below every page shown.
    pane.get_by_role("searchbox", name="Show runs whose name or id holds").fill(_run_id(3)[-6:])
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", _run_id(3))
    expect(pane).to_contain_text("1 run found in the whole run index")
    expect(older).to_have_count(0)

    # A filter's pages go back too: the failed runs of one site, page after page.
    pane.get_by_role("searchbox", name="Show runs whose name or id holds").fill("")
    pane.locator("select[aria-label='Show runs of site']").select_option("abroad")
    pane.locator("select[aria-label='Show runs in state']").select_option("failed")
    abroad_failed = [_run_id(i) for i in range(COUNT - 1, -1, -1) if i % 2 and i % 3 == 1]
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-run-id", abroad_failed[0])
    expect(pane).to_contain_text("runs 1–50 of those the filters find in the whole run index")
    older.click()
    expect(rows).to_have_count(100)
    expect(rows.last).to_have_attribute("data-run-id", abroad_failed[99])
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.state)")) == {"failed"}
