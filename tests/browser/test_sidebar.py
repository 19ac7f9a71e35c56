"""The sidebar in a real JupyterLab and Chromium: sites, runs, run states, a cancel, checkpoint buttons, the cell command."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from jupyter_split import core
from jupyter_split.config import load_config
from jupyter_split.core.outcome import CellOptions
from jupyter_split.protocol import RUN_STATES
from jupyter_split.runs.events import is_final
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


def _insert_attach_and_run(page, run_row, run_id: str):
    """The run row's insert button, then the inserted cell run with Shift+Enter; returns the cell."""
    from playwright.sync_api import expect

    run_row.locator("button[title^='Insert %split attach']").click()
    cell = _last_cell(page)
    expect(cell.locator(".cm-content")).to_contain_text(f"%split attach {run_id}")
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    _wait_done(cell)
    return cell


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
    attach_cell = _insert_attach_and_run(page, run, run_id)
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

    # Pushing resident data abroad: the guard's dry run refuses first, so the button is off and says why.
    push = tuned.locator(".jp-split-transfer")
    expect(push).to_have_attribute("data-check", "refused")
    expect(push).to_be_disabled()
    expect(push).to_have_attribute("title", re.compile(r"The guard would refuse: .*residency label CN", re.S))
    expect(tuned.locator(".jp-split-refusal")).to_have_text("not to abroad: residency label CN must stay")
    page.screenshot(path=str(ARTIFACTS / "push-refused.png"))
    assert not Path(abroad.removeprefix("file://"), "ckpts", "tuned").exists()
    dialog = page.locator(".jp-Dialog")

    # Pulling weights home is allowed, and the copy shows up under home.
    pretrain = sidebar.locator(f".jp-split-checkpoint[data-url='{abroad}/ckpts/pretrain']")
    pretrain.locator(".jp-split-transfer").click()
    expect(pretrain.locator(".jp-split-transfer-state")).to_have_attribute("data-state", "succeeded")
    expect(pretrain.locator(".jp-split-transfer-state")).to_contain_text("copied to home · 2.0 KB of 2.0 KB")
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

    # The run knows the notebook its cell came from (the kernel's own, as JupyterLab names it): the
    # notebook filter offers it and keeps that run alone, found by the server in the whole index.
    notebook = sidebar.locator("select[aria-label='Show runs started from notebook']")
    expect(notebook.locator("option")).to_have_count(2)
    name = notebook.locator("option").nth(1).get_attribute("value")
    assert name and name.endswith(".ipynb"), name
    notebook.select_option(name)
    expect(sidebar.locator(".jp-split-run")).to_have_count(1)
    expect(sidebar.locator(".jp-split-section[data-section='runs']")).to_contain_text(
        "1 run found in the whole run index")


def _detached(code: str) -> str:
    """A real run on the home site, started from here as `%%on home --detach` would."""
    return core.get_split().execute(code, CellOptions(site="home", detach=True), None, lambda event: None).run_id


def _wait_log(run_id: str, ended: bool, text: str = "", timeout: float = 90) -> None:
    """Until the run's own log has ended (or, with ended=False, shows `text`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = core.get_split().run_events(run_id)
        if any(is_final(e) for e in events) if ended else any(text in e.get("text", "") for e in events):
            return
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not {'end' if ended else f'print {text!r}'} in {timeout}s")


#: in the page: the contrast ratio (WCAG) of an element's text on its background, and that background
_CONTRAST = """el => {
  const style = getComputedStyle(el);
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const paint = colors => {
    for (const color of colors) { ctx.fillStyle = color; ctx.fillRect(0, 0, 1, 1); }
    return Array.from(ctx.getImageData(0, 0, 1, 1).data).slice(0, 3);
  };
  const page = getComputedStyle(document.body).getPropertyValue('--jp-layout-color1').trim() || 'white';
  const back = paint([page, style.backgroundColor]);
  const text = paint([page, style.backgroundColor, style.color]);
  const lum = rgb => rgb.map(v => v / 255).map(v => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const [hi, lo] = [lum(back), lum(text)].sort((a, b) => b - a);
  return { ratio: (hi + 0.05) / (lo + 0.05), back: back.join(',') };
}"""


def test_run_states_come_from_the_server(page, lab: Lab) -> None:
    from playwright.sync_api import expect

    # Real runs in every badge style: three that ended (one interrupted) and one that goes on.
    runs = {
        "interrupted": _detached("print('before the interrupt', flush=True)\nraise KeyboardInterrupt"),
        "succeeded": _detached("print('all done', flush=True)"),
        "failed": _detached("raise ValueError('boom')"),
        "running": _detached("import time\nprint('still going', flush=True)\ntime.sleep(600)"),
    }
    for state, run_id in runs.items():
        _wait_log(run_id, ended=state != "running", text="still going")

    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))

    def events_asked(run_id: str) -> int:
        return sum(f"/jupyter-split/runs/{run_id}/events" in url for url in asked)

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    styles = {s.name: s.style for s in RUN_STATES}
    backs = set()
    for state, run_id in runs.items():
        row = sidebar.locator(f".jp-split-run[data-run-id='{run_id}']")
        expect(row).to_have_attribute("data-state", state, timeout=RUN_TIMEOUT)
        badge = row.locator(".jp-split-state")
        expect(badge).to_have_class(f"jp-split-state jp-split-state-{styles[state]}")
        seen = badge.evaluate(_CONTRAST)
        assert seen["ratio"] >= 4.5, f"the {state} badge reads at {seen['ratio']:.2f}:1"
        backs.add(seen["back"])
    assert len(backs) == len(set(styles[s] for s in runs)), "two badge styles look the same"
    expect(sidebar.locator(f".jp-split-run[data-run-id='{runs['running']}'] .jp-split-lastline")).to_have_text("still going")
    expect(page.locator(".jp-split-status")).to_have_text("split: 1 running")
    page.screenshot(path=str(ARTIFACTS / "run-states.png"))

    # One request a poll for the runs list: the sidebar reads no run's log itself, not even a running one's.
    lists_before = sum("/jupyter-split/runs?" in url or url.endswith("/jupyter-split/runs") for url in asked)
    page.wait_for_timeout(2000)  # four refresh intervals (0.5 s in these tests)
    lists = sum("/jupyter-split/runs?" in url or url.endswith("/jupyter-split/runs") for url in asked)
    assert lists >= lists_before + 2, asked
    assert sum("/events" in url for url in asked) == 0, [url for url in asked if "/events" in url]

    # `%split attach`, inserted from the sidebar, works in a kernel that never loaded the magics.
    _new_notebook(page)
    attach_cell = _insert_attach_and_run(page, sidebar.locator(f".jp-split-run[data-run-id='{runs['succeeded']}']"),
                                         runs["succeeded"])
    expect(attach_cell.locator(".jp-OutputArea")).to_contain_text("all done")
    expect(attach_cell.locator(".jp-OutputArea")).not_to_contain_text("not found")

    # A run panel stops asking once the server says its run ended; one on a running run goes on.
    shown = {"interrupted": "before the interrupt", "succeeded": "all done", "running": "still going"}
    for state, text in shown.items():
        sidebar.locator(f".jp-split-run[data-run-id='{runs[state]}']").click()
        view = page.locator(f"#jupyter-split-run-{runs[state]} .jp-split-runview")
        expect(view).to_contain_text(text)
        status = view.locator(".jp-split-runview-status")
        expect(status).to_have_attribute("data-state", state)
        expect(status.locator(".jp-split-state")).to_have_class(f"jp-split-state jp-split-state-{styles[state]}")
    page.wait_for_timeout(3000)  # six refresh intervals
    counts = {state: events_asked(runs[state]) for state in shown}
    print("event requests per run panel:", counts)
    assert counts["interrupted"] == 1 and counts["succeeded"] == 1, counts
    assert counts["running"] >= 3, counts  # the count is of a panel that does poll: it sees its requests
