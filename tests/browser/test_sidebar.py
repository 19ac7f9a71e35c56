"""The sidebar in a real JupyterLab and Chromium: sites, runs, a cancel, checkpoint buttons, the cell command."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from jupyter_split.config import load_config
from jupyter_split.sync import copy

from .conftest import ARTIFACTS, Lab

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 90_000  # ms: the first cell on a site also starts its session runner


def _open_lab(page, lab: Lab) -> None:
    page.goto(f"{lab.url}/lab?token={lab.token}")
    page.locator(".jp-LauncherCard[data-category='Notebook']").first.wait_for()


def _open_sidebar(page):
    page.locator(".jp-SideBar .lm-TabBar-tab[data-id='jupyter-split-sidebar']").click()
    sidebar = page.locator("#jupyter-split-sidebar")
    sidebar.wait_for(state="visible")
    return sidebar


def _new_notebook(page) -> None:
    page.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
    # The kernel is connected once the status bar names it as idle (before, a run is silently dropped).
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"Python 3.*\| Idle")).first.wait_for()


def _run_cell(page, code: str):
    """Type `code` into the notebook's last cell and run it with Shift+Enter, as a person would."""
    cell = _last_cell(page)
    cell.locator(".cm-content").click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    return cell


def _last_cell(page):
    # Pinned by index: running a cell appends a new one, and `.last` would follow it.
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    cells.first.wait_for()
    return cells.nth(cells.count() - 1)


def _wait_done(cell, timeout: int = RUN_TIMEOUT) -> None:
    from playwright.sync_api import expect

    expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=timeout)


def test_sidebar_shows_sites_follows_runs_and_cancels(page, lab: Lab) -> None:
    from playwright.sync_api import expect

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)

    # Both default sites, reachable, with their jurisdictions.
    home = sidebar.locator(".jp-split-site[data-site='home']")
    abroad = sidebar.locator(".jp-split-site[data-site='abroad']")
    expect(home).to_have_attribute("data-reachable", "true")
    expect(abroad).to_have_attribute("data-reachable", "true")
    expect(home).to_contain_text("CN")
    expect(abroad).to_contain_text("SG")
    expect(sidebar.locator(".jp-split-section[data-section='runs']")).to_contain_text("No runs yet")
    status = page.locator(".jp-split-status")
    expect(status).to_have_text("split: 0 running")

    _new_notebook(page)
    _wait_done(_run_cell(page, "%load_ext jupyter_split"))

    # A %%on home cell: its run appears in progress, then finishes.
    cell = _run_cell(page, "%%on home\nimport time\nprint('hello from home', flush=True)\ntime.sleep(4)\n6 * 7")
    run = sidebar.locator(".jp-split-run").first
    expect(run).to_have_attribute("data-state", "running", timeout=RUN_TIMEOUT)
    expect(run).to_contain_text("home")
    expect(status).to_have_text("split: 1 running")
    expect(run.locator(".jp-split-lastline")).to_have_text("hello from home")
    expect(run).to_have_attribute("data-state", "succeeded", timeout=RUN_TIMEOUT)
    _wait_done(cell)
    expect(cell.locator(".jp-OutputArea")).to_contain_text("hello from home")
    expect(cell.locator(".jp-OutputArea")).to_contain_text("42")
    expect(status).to_have_text("split: 0 running")
    run_id = run.get_attribute("data-run-id")

    # Its full output in a main-area panel.
    run.click()
    view = page.locator(f"#jupyter-split-run-{run_id} .jp-split-runview")
    expect(view).to_contain_text("hello from home")
    expect(view).to_contain_text("42")
    expect(view.locator(".jp-split-runview-status")).to_have_attribute("data-state", "succeeded")

    # `%split attach RUN`, inserted from the sidebar, replays the run in the notebook.
    run.locator("button[title^='Insert %split attach']").click()
    attach_cell = _last_cell(page)
    expect(attach_cell.locator(".cm-content")).to_have_text(f"%split attach {run_id}")
    attach_cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    _wait_done(attach_cell)
    expect(attach_cell.locator(".jp-OutputArea")).to_contain_text("hello from home")

    # A long detached run, cancelled from the sidebar.
    _wait_done(_run_cell(page, "%%on home --detach\nimport time\nprint('long run started', flush=True)\ntime.sleep(600)"))
    long_run = sidebar.locator(".jp-split-run").first
    expect(long_run).not_to_have_attribute("data-run-id", run_id)
    expect(long_run).to_have_attribute("data-state", "running")
    expect(long_run.locator(".jp-split-lastline")).to_have_text("long run started", timeout=RUN_TIMEOUT)
    long_run.locator(".jp-split-cancel").click()
    page.locator(".jp-Dialog .jp-mod-warn").click()  # "Cancel run" in the confirmation
    expect(long_run).to_have_attribute("data-state", "cancelled", timeout=30_000)
    expect(long_run.locator(".jp-split-cancel")).to_have_count(0)
    expect(status).to_have_text("split: 0 running")
    page.screenshot(path=str(ARTIFACTS / "sidebar.png"))


def _publish(folder: Path, url: str, **manifest) -> None:
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"w" * 2048)
    copy(str(folder), url, **manifest)


def test_checkpoint_buttons_and_run_cell_on_site(page, lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    sites = load_config().sites  # the same default config and data directory as the lab server's
    abroad, home = sites["abroad"].storage, sites["home"].storage
    _publish(tmp_path / "pretrain", f"{abroad}/ckpts/pretrain", site="abroad")
    _publish(tmp_path / "tuned", f"{home}/ckpts/tuned", labels=["CN"], site="home")

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    tuned = sidebar.locator(f".jp-split-checkpoint[data-url='{home}/ckpts/tuned']")
    expect(tuned).to_contain_text("CN")
    expect(tuned).to_contain_text("2.0 KB")

    # Pushing resident data abroad: the guard refuses, and the dialog says why and what to do.
    tuned.locator(".jp-split-transfer").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Not copied to abroad")
    expect(dialog).to_contain_text("residency label CN")
    expect(dialog).to_contain_text("Nothing was sent")
    page.screenshot(path=str(ARTIFACTS / "push-refused.png"))
    dialog.locator(".jp-mod-accept").click()
    assert not Path(abroad.removeprefix("file://"), "ckpts", "tuned").exists()

    # Pulling weights home is allowed, and the copy shows up under home.
    sidebar.locator(f".jp-split-checkpoint[data-url='{abroad}/ckpts/pretrain'] .jp-split-transfer").click()
    expect(dialog).to_contain_text("Copied to home")
    dialog.locator(".jp-mod-accept").click()
    expect(sidebar.locator(f".jp-split-checkpoint[data-url='{home}/ckpts/pretrain']")).to_have_count(1)

    _new_notebook(page)
    cell = _last_cell(page)
    cell.locator(".cm-content").click()
    page.keyboard.insert_text("print('via the toolbar')")

    # The button on the active cell asks for a site, writes the %%on line and runs the cell.
    cell.locator(".jp-cell-toolbar [data-command='jupyter-split:run-cell-on-site']").click()
    dialog.locator("select").select_option("home")
    dialog.locator(".jp-mod-accept").click()
    expect(cell.locator(".cm-content")).to_contain_text("%%on home")
    _wait_done(cell)
    expect(cell.locator(".jp-OutputArea")).to_contain_text("via the toolbar")
    expect(sidebar.locator(".jp-split-run").first).to_have_attribute("data-state", "succeeded")
    page.screenshot(path=str(ARTIFACTS / "run-cell-on-site.png"))
