"""The run panel's Interrupt and Cancel in a real JupyterLab and Chromium, on a real session of the home site:
Cancel first says what it would do to the session (and keeping the run changes nothing); Interrupt, by
keyboard, ends the cell as a notebook's stop button does (`interrupted`, its KeyboardInterrupt, the last
line it printed), and the session lives on with its variables for the cell queued behind."""
from __future__ import annotations

import pytest

from jupyter_split import core
from tests.sessions.cells import Cell

from .conftest import SCREENSHOTS, Lab
from .test_sidebar import RUN_TIMEOUT, _open_lab, _open_sidebar

pytestmark = pytest.mark.slow


def test_interrupt_from_the_run_panel_keeps_the_session(page, lab: Lab) -> None:
    from playwright.sync_api import expect

    assert Cell("x = 41").result().state == "succeeded"
    busy = Cell("import time\nprint('working', flush=True)\ntime.sleep(300)")
    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    row = sidebar.locator(".jp-split-run[data-state='running']")
    expect(row.locator(".jp-split-lastline")).to_have_text("working", timeout=RUN_TIMEOUT)
    run_id = row.get_attribute("data-run-id")
    queued = Cell("print(x + 1)")  # another client's cell, waiting on the same session
    session = sidebar.locator(".jp-split-session[data-site='home']")
    expect(session).to_have_attribute("data-queued", "1", timeout=60_000)

    row = sidebar.locator(f".jp-split-run[data-run-id='{run_id}']")  # the busy one: the list holds the queued one too
    row.click()
    view = page.locator(f"#jupyter-split-run-{run_id} .jp-split-runview")
    status = view.locator(".jp-split-runview-status")
    expect(status).to_have_attribute("data-state", "running")
    expect(view).to_contain_text("working")
    interrupt = status.get_by_role("button", name=f"Interrupt run {run_id}: a KeyboardInterrupt in its cell")
    expect(interrupt).to_be_visible()
    # the panel's head and first lines (below them the panel is empty): its buttons while the cell runs
    box = status.bounding_box()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "run-panel.png"), animations="disabled",
                    clip={"x": box["x"] - 8, "y": box["y"] - 8, "width": box["width"] + 16, "height": 110})

    # Cancel says what it does to a run in a session: the session ends, with its variables and its queue.
    status.get_by_role("button", name=f"Cancel run {run_id}").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Cancel run and end its session")
    expect(dialog).to_contain_text(f"Cancel {run_id}? It runs in the session on home, and cancelling ends that "
                                   "session, as Stop in the sessions pane does: its variables are lost, 1 cell "
                                   "queued on it ends cancelled; the next cell on home starts a fresh session.")
    expect(dialog).to_contain_text("To stop this cell alone and keep the session, interrupt it instead.")
    dialog.locator(".jp-mod-reject").click()  # keep it running
    expect(dialog).to_have_count(0)
    expect(status).to_have_attribute("data-state", "running")

    # Interrupt, by keyboard: the cell ends as a notebook's stop button ends it. (The request and its
    # answer are checked on the way: a run that stays `running` then says which side failed.)
    interrupt.focus()
    expect(interrupt).to_be_focused()
    path = f"/jupyter-split/runs/{run_id}/interrupt"  # (a query after it: the page's cache-buster)
    with page.expect_response(lambda r: r.url.split("?")[0].endswith(path) and r.request.method == "POST",
                              timeout=60_000) as sent:
        page.keyboard.press("Enter")
    assert sent.value.ok, f"the interrupt was refused: {sent.value.status} {sent.value.text()}"
    expect(status).to_have_attribute("data-state", "interrupted", timeout=60_000)
    expect(view).to_contain_text("KeyboardInterrupt")
    expect(status.get_by_role("button")).to_have_count(0)  # nothing left to interrupt or cancel
    run = sidebar.locator(f".jp-split-run[data-run-id='{run_id}']")
    expect(run).to_have_attribute("data-state", "interrupted")
    expect(run.locator(".jp-split-lastline")).to_have_text("working")  # the last line it printed, not an error
    assert busy.result().state == "interrupted"

    # The session lived on: the cell queued behind runs next, in the same namespace.
    outcome = queued.result()
    assert outcome.state == "succeeded" and queued.text == "42\n"
    assert core.get_split().index.get(outcome.run_id).handle.get("pid") == core.get_split().index.get(run_id).handle.get("pid")
    expect(session).to_have_attribute("data-state", "warm", timeout=60_000)
