"""The sidebar by keyboard and by contrast, in a real JupyterLab and Chromium: the focus order from the top,
one tab stop per list (arrows inside), every control named, and every text and badge at 4.5:1 or more
in the light and the dark theme, measured from the rendered page."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from jupyter_split import core, policy
from jupyter_split.policy import ResidencyError
from jupyter_split.server.transfer import copy_to_site
from tests.accelerators.conftest import stand_in_path

from .conftest import Lab, shot, two_sites, widen_sidebar
from .test_sidebar import _detached, _open_lab, _open_sidebar, _publish, _wait_log

pytestmark = pytest.mark.slow

#: WCAG AA for normal text
AA = 4.5


@pytest.fixture
def busy_sites(split_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Two local sites with the vendor tools' STAND-INS on PATH (no card exists here) and a lease nearly
    spent; runs in three states; a resident checkpoint; a refusal and a declassification in the audit log."""
    two_sites(split_home, "a11y", abroad='lease = { gpu_hours = 0.001, price_per_gpu_hour = 2.5, currency = "USD" }')
    monkeypatch.setenv("PATH", stand_in_path())
    monkeypatch.setenv("STANDIN_SMI_CARDS", "1")
    config = core.get_split().config
    runs = {"succeeded": _detached("print('all done', flush=True)"), "failed": _detached("raise ValueError('boom')"),
            "running": _detached("import time\nprint('still going', flush=True)\ntime.sleep(600)")}
    for state, run_id in runs.items():
        _wait_log(run_id, ended=state != "running", text="still going")
    _publish(tmp_path / "tuned", f"{config.sites['home'].storage}/ckpts/tuned", labels=["CN"], site="home")
    for name in ("tuned", "other"):
        if name == "other":
            _publish(tmp_path / name, f"{config.sites['home'].storage}/ckpts/{name}", labels=["CN"], site="home")
        with pytest.raises(ResidencyError):
            copy_to_site(config, "home", f"ckpts/{name}", "abroad")
    policy.declassify(f"{config.sites['home'].storage}/ckpts/other", "approved: ticket 9", config=config)
    yield runs
    core.get_split().cancel(runs["running"])


#: in the page: for every visible element of the sidebar (and the open dialog) with text of its own, the
#: contrast ratio (WCAG) of that text on what lies under it: the backgrounds of it and its ancestors,
#: painted over one another as the browser does (alpha included), then the text's colour over them
_CONTRASTS = """(roots) => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const paint = colors => {
    ctx.clearRect(0, 0, 1, 1);
    for (const color of colors) { ctx.fillStyle = color; ctx.fillRect(0, 0, 1, 1); }
    return Array.from(ctx.getImageData(0, 0, 1, 1).data).slice(0, 3);
  };
  const lum = rgb => rgb.map(v => v / 255).map(v => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const found = [];
  for (const root of roots.map(sel => document.querySelector(sel)).filter(Boolean)) {
    for (const el of [root, ...root.querySelectorAll('*')]) {
      const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.nodeValue.trim());
      const style = getComputedStyle(el);
      if (!own || !el.getClientRects().length || style.visibility === 'hidden') continue;
      const backs = [];
      for (let up = el; up; up = up.parentElement) backs.unshift(getComputedStyle(up).backgroundColor);
      const back = paint(['white', ...backs]);
      const text = paint(['white', ...backs, style.color]);
      const [hi, lo] = [lum(back), lum(text)].sort((a, b) => b - a);
      found.push({ ratio: (hi + 0.05) / (lo + 0.05), text: el.textContent.trim().slice(0, 40),
                   cls: (el.className && el.className.baseVal === undefined ? el.className : el.tagName) || el.tagName,
                   color: style.color, back: back.join(',') });
    }
  }
  return found;
}"""


def _contrasts(page, theme: str) -> list[dict]:
    page.evaluate("theme => window.jupyterapp.commands.execute('apputils:change-theme', { theme })", theme)
    page.locator(f"body[data-jp-theme-name='{theme}']").wait_for(state="attached")
    page.wait_for_timeout(500)  # the theme's stylesheet applied
    return page.evaluate(_CONTRASTS, ["#jupyter-split-sidebar", ".jp-split-status"])


def test_every_text_and_badge_reads_at_aa_in_both_themes(busy_sites, page, lab: Lab) -> None:
    from playwright.sync_api import expect

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    widen_sidebar(page)
    expect(sidebar.locator(".jp-split-run")).to_have_count(3)
    expect(sidebar.locator(".jp-split-card").first).to_be_visible()
    expect(sidebar.locator(".jp-split-lease[data-lease='bad']")).to_have_count(1)
    expect(sidebar.locator(".jp-split-transfer[data-check='refused']")).to_have_count(1)
    expect(sidebar.locator(".jp-split-entry")).to_have_count(3)
    # a failed run's row shows its error, marked as one
    failed = sidebar.locator(f".jp-split-run[data-run-id='{busy_sites['failed']}'] .jp-split-lastline")
    expect(failed).to_have_text("ValueError: boom")
    expect(failed).to_have_class("jp-split-lastline jp-mod-error")
    kinds = {"jp-split-state", "jp-split-badge", "jp-split-detail", "jp-split-lastline", "jp-split-refusal",
             "jp-split-lease", "jp-split-reason", "jp-split-card-figures", "jp-split-decision"}
    for theme, name in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
        seen = _contrasts(page, theme)
        covered = {k for k in kinds if any(k in row["cls"].split() for row in seen)}
        assert covered == kinds, f"{theme}: nothing of {kinds - covered} was measured"
        low = [row for row in seen if row["ratio"] < AA]
        assert not low, f"{theme}: below {AA}:1: " + "; ".join(
            f"{r['cls']} {r['text']!r} {r['ratio']:.2f}:1 ({r['color']} on {r['back']})" for r in low)
        shot(sidebar, f"sidebar-{name}")


def _focused(page) -> str:
    """What has the keyboard focus, in words the test can compare."""
    return page.evaluate("""() => {
      const el = document.activeElement;
      if (!el) return '';
      const row = el.getAttribute('data-row');
      if (row !== null) return `row:${el.closest('[data-section]').dataset.section}`;
      if (el.classList.contains('jp-split-toggle')) return `toggle:${el.closest('[data-section]').dataset.section}`;
      return `${el.tagName.toLowerCase()}:${el.getAttribute('aria-label') || el.textContent.trim()}`;
    }""")


def test_keyboard_alone_reaches_every_pane_in_order(busy_sites, page, lab: Lab) -> None:
    from playwright.sync_api import expect

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    runs = sidebar.locator(".jp-split-run")
    expect(runs).to_have_count(3)
    expect(sidebar.locator(".jp-split-entry")).to_have_count(3)

    # Every control and row has a name and a role.
    unnamed = sidebar.evaluate("""root => Array.from(root.querySelectorAll('button, select, input, [data-row]'))
      .filter(el => !(el.getAttribute('aria-label') || el.textContent.trim())).map(el => el.outerHTML.slice(0, 80))""")
    assert unnamed == []
    assert runs.first.get_attribute("role") == "listitem"
    for key in ("sites", "sessions", "runs", "checkpoints", "border", "wandb"):
        section = sidebar.locator(f".jp-split-section[data-section='{key}']")
        expect(section).to_have_attribute("role", "region")
        expect(section.locator("ul[role='list']").or_(section.locator(".jp-split-empty"))).not_to_have_count(0)

    # From the top: the refresh button, then each pane's heading, its filters and its list, one stop a list.
    sidebar.locator("button[aria-label='Refresh now']").focus()
    order = [_focused(page)]
    for _ in range(40):
        page.keyboard.press("Tab")
        now = _focused(page)
        if not now.startswith(("row:", "toggle:", "button:", "input:", "select:", "a:")) or now in order[-1:]:
            break
        order.append(now)
    toggles = [item for item in order if item.startswith("toggle:")]
    assert toggles == ["toggle:sites", "toggle:sessions", "toggle:runs", "toggle:checkpoints", "toggle:border",
                       "toggle:wandb"], order
    assert order.count("row:runs") == 1, order  # three runs, one tab stop
    at = order.index("toggle:runs")
    assert order[at + 1:at + 5] == ["input:Show runs whose name or id holds", "select:Show runs of site",
                                    "select:Show runs in state", "select:Show runs started from notebook"], order
    assert order.index("row:runs") < order.index("toggle:checkpoints")
    assert order.index("toggle:border") < order.index("row:border") < order.index("toggle:wandb"), order

    # Arrows move along the run rows, Enter opens one; the heading's button folds a pane.
    sidebar.locator(".jp-split-run").first.focus()
    page.keyboard.press("ArrowDown")
    second = runs.nth(1)
    expect(second).to_be_focused()
    expect(second).to_have_attribute("tabindex", "0")
    expect(runs.first).to_have_attribute("tabindex", "-1")
    page.keyboard.press("End")
    expect(runs.nth(2)).to_be_focused()
    run_id = runs.nth(2).get_attribute("data-run-id")
    page.keyboard.press("Enter")
    expect(page.locator(f"#jupyter-split-run-{run_id} .jp-split-runview")).to_be_visible()
    expect(page.locator(f"#jupyter-split-run-{run_id} .jp-split-cancel")).to_have_count(0)  # it ended

    # The running run's panel has its own cancel button, reached and pressed by keyboard.
    running = busy_sites["running"]
    sidebar.locator(f".jp-split-run[data-run-id='{running}']").focus()
    page.keyboard.press("Enter")
    cancel = page.locator(f"#jupyter-split-run-{running} .jp-split-cancel")
    cancel.focus()
    page.keyboard.press("Enter")
    page.locator(".jp-Dialog .jp-mod-warn").click()  # "Cancel run" in the confirmation
    status = page.locator(f"#jupyter-split-run-{running} .jp-split-runview-status")
    expect(status).to_have_attribute("data-state", "cancelled", timeout=30_000)
    expect(cancel).to_have_count(0)

    toggle = sidebar.locator(".jp-split-section[data-section='sites'] .jp-split-toggle")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(sidebar.locator(".jp-split-site").first).to_be_hidden()
    page.keyboard.press("Space")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(sidebar.locator(".jp-split-site").first).to_be_visible()

    # The filters by keyboard: type a part of an id, and only that run stays.
    sidebar.locator("input[aria-label='Show runs whose name or id holds']").focus()
    page.keyboard.type(run_id[-8:])
    expect(runs).to_have_count(1)
    expect(runs.first).to_have_attribute("data-run-id", run_id)
    # the server's answer, from the whole run index, follows the filter at once
    expect(sidebar.locator(".jp-split-section[data-section='runs']")).to_contain_text(
        "1 run found in the whole run index")
    shot(sidebar.locator(".jp-split-section[data-section='runs']"), "runs-filtered")
