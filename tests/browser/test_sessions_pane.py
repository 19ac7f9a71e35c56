"""The sessions pane in a real JupyterLab and Chromium, against real session runners: a site's session
gone, then busy with a cell another client (a notebook's kernel) queued behind it, named with its notebook,
stopped after a confirmation (the cells cancelled), then restarted warm."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.sessions.cells import Cell

from .conftest import Lab, shot, two_sites, widen_sidebar
from .test_sidebar import _open_lab, _open_sidebar

pytestmark = pytest.mark.slow


@pytest.fixture
def sites(split_home: Path) -> None:
    two_sites(split_home, "sessions")


def test_sessions_pane_shows_the_queue_and_stops_and_restarts_after_asking(sites, page, lab: Lab, monkeypatch) -> None:
    from playwright.sync_api import expect

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    pane = sidebar.locator(".jp-split-section[data-section='sessions']")
    home = pane.locator(".jp-split-session[data-site='home']")
    expect(home).to_have_attribute("data-state", "gone")
    expect(home.locator(".jp-split-stop")).to_have_count(0)  # nothing to stop

    # Two clients (two notebooks' kernels): one's cell runs, the other's waits behind it.
    busy = Cell("import time\nprint('going', flush=True)\ntime.sleep(300)")
    expect(home).to_have_attribute("data-state", "busy", timeout=90_000)
    # the second from a notebook's kernel, which jupyter_server tells its notebook's path
    monkeypatch.setenv("JPY_SESSION_NAME", "experiments/second.ipynb")
    queued = Cell("print('second')")
    expect(home).to_have_attribute("data-queued", "1", timeout=30_000)
    monkeypatch.delenv("JPY_SESSION_NAME")
    expect(home.locator(".jp-split-running")).to_contain_text("running")
    expect(home.locator(".jp-split-running")).to_contain_text("import time")
    waiting = home.locator(".jp-split-queue li")
    expect(waiting).to_have_count(1)
    queued_id = waiting.get_attribute("data-run-id")
    expect(waiting).to_have_text(f"queued {queued_id} from second.ipynb: print('second')")
    expect(waiting).to_have_attribute("title", f"{queued_id}, from experiments/second.ipynb")
    expect(home.locator(".jp-split-running")).not_to_contain_text(" from ")  # a cell from no notebook
    expect(home.locator(".jp-split-elapsed")).to_contain_text("pid ")
    expect(home.locator(".jp-split-elapsed")).to_contain_text("up ")
    expect(home.locator(".jp-split-elapsed")).to_contain_text("MB")
    expect(pane.locator(".jp-split-session[data-site='abroad']")).to_have_attribute("data-state", "gone")
    widen_sidebar(page)
    shot(pane, "sessions")

    # Stop asks first; keeping it changes nothing.
    dialog = page.locator(".jp-Dialog")
    home.locator(".jp-split-stop").click()
    expect(dialog).to_contain_text("Stop the session on home? Its variables are lost, and 2 runs")
    dialog.locator(".jp-mod-reject").click()
    expect(home).to_have_attribute("data-state", "busy")
    home.locator(".jp-split-stop").click()
    dialog.locator(".jp-mod-warn").click()
    expect(home).to_have_attribute("data-state", "gone", timeout=60_000)
    assert [c.result().state for c in (busy, queued)] == ["cancelled", "cancelled"]
    runs = sidebar.locator(".jp-split-run[data-state='cancelled']")
    expect(runs).to_have_count(2)

    # Restart starts a fresh one: warm, nothing queued.
    home.locator(".jp-split-restart").click()
    expect(dialog).to_contain_text("Restart the session on home? Its variables are lost.")
    dialog.locator(".jp-mod-warn").click()
    expect(home).to_have_attribute("data-state", "warm", timeout=90_000)
    expect(home).to_have_attribute("data-queued", "0")
