"""The run panel on long runs in a real JupyterLab and Chromium: it opens on the log's tail, keeps the
window the config sets (`[notebook] scrollback`), says what it left out and how to see it all, folds a
tqdm bar into one display, and follows a run printing fast without holding more than the window."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from jupyter_split import core
from jupyter_split.core.outcome import CellOptions
from jupyter_split.runs.events import is_final

from .conftest import Lab, two_sites
from .test_sidebar import RUN_TIMEOUT, _open_lab, _open_sidebar

pytestmark = pytest.mark.slow

WINDOW = 1000  # the config's scrollback below, which the panel learns from the server


@pytest.fixture
def sites(split_home: Path) -> None:
    two_sites(split_home, "longrun", more=f"[notebook]\nscrollback = {WINDOW}\n")


def _detached(code: str) -> str:
    return core.get_split().execute(code, CellOptions(site="home", detach=True), None, lambda event: None).run_id


def _wait(run_id: str, what, timeout: float = 120) -> None:
    """Until `what` holds of the run's last records (read back from its log's end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what(core.get_split().run_tail(run_id, 5)):
            return
        time.sleep(0.2)
    raise AssertionError(f"run {run_id}: not so after {timeout}s")


def _ended(events) -> bool:
    return any(is_final(e) for e in events)


def _held_lines(view) -> int:
    """The lines of text the panel's outputs hold in the page (what the DOM keeps)."""
    return view.locator(".jp-OutputArea").evaluate("el => el.innerText.split('\\n').length")


def test_run_panel_keeps_a_bounded_window_of_a_long_run(sites, page, lab: Lab) -> None:
    from playwright.sync_api import expect

    # 20,000 lines written at once (batched in a few records), then a tqdm bar of 3 s, then a result.
    bulk = _detached(
        "import sys, time\nfrom tqdm import tqdm\n"
        "sys.stdout.write(''.join(f'step-{i}-end\\n' for i in range(20000)))\n"
        "for _ in tqdm(range(300), mininterval=0.01):\n    time.sleep(0.01)\n"
        "print('all done', flush=True)\n'final value'")
    _wait(bulk, _ended)

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    sidebar.locator(f".jp-split-run[data-run-id='{bulk}']").click()
    view = page.locator(f"#jupyter-split-run-{bulk} .jp-split-runview")
    expect(view.locator(".jp-split-runview-status")).to_have_attribute("data-state", "succeeded", timeout=RUN_TIMEOUT)
    expect(view).to_contain_text("step-19999-end")  # the last line, never dropped
    expect(view).to_contain_text("all done")
    expect(view).to_contain_text("final value")  # the result
    # opened on the fewest records that hold the window's lines, whole (the big write is one or a few
    # records): the earlier records are named, and the lines of those kept that the window leaves out
    expect(view).to_contain_text(re.compile(r"… ([\d,]+ earlier records and )?[\d,]+ lines left out here: "
                                            rf"`%split logs {bulk}` \(`jupyter-split logs {bulk}` in a terminal\) "
                                            "shows them all"))
    expect(view).to_contain_text(f"step-{20_000 - WINDOW // 2}-end")  # the window's tail, as printed
    expect(view).not_to_contain_text("step-0-end")  # the log's start: not read, not shown
    # one bar, at its last state, not one output per redraw
    bars = view.locator(".jp-OutputArea-output", has_text=re.compile(r"\d+%\|"))
    expect(bars).to_have_count(1)
    expect(bars).to_contain_text("300/300")
    assert _held_lines(view) <= WINDOW + 10, _held_lines(view)

    # A run printing a line a record, followed live: the panel opens on its tail and stays in its window.
    live = _detached(
        "import time\nfor i in range(20000):\n    print(f'live-{i}', flush=True)\n"
        "    if i % 2000 == 0: time.sleep(1)\n"
        "print('live done', flush=True)")
    _wait(live, lambda events: any("live-4" in e.get("text", "") for e in events))
    sidebar.locator(f".jp-split-run[data-run-id='{live}']").click()
    view = page.locator(f"#jupyter-split-run-{live} .jp-split-runview")
    expect(view.locator(".jp-split-runview-status")).to_have_attribute("data-state", "running", timeout=RUN_TIMEOUT)
    peak = 0
    deadline = time.monotonic() + 120
    while view.locator(".jp-split-runview-status").get_attribute("data-state") == "running":
        assert time.monotonic() < deadline, "the live run did not end"
        peak = max(peak, _held_lines(view))
        page.wait_for_timeout(300)
    expect(view).to_contain_text("live done")
    expect(view).to_contain_text("live-19999")
    # opened on the log's tail: the records before it are named, and where the whole log is
    expect(view).to_contain_text(re.compile(r"… [\d,]+ earlier records( and [\d,]+ lines)? left out here: "
                                            rf"`%split logs {live}`"))
    peak = max(peak, _held_lines(view))
    assert peak <= WINDOW + 10, f"the panel held {peak} lines of a {WINDOW}-line window"
