"""The W&B pane in the real browser: a real cell run with `--wandb` (W&B offline, as the tests run it)
shows as its W&B run: name, site, state and metrics, marked offline."""
from __future__ import annotations

import pytest

from jupyter_split import core
from jupyter_split.core.outcome import CellOptions

from .conftest import Lab, shot, widen_sidebar
from .test_sidebar import _open_lab, _open_sidebar

pytestmark = pytest.mark.slow


def test_the_wandb_pane_shows_a_real_offline_run(page, lab: Lab) -> None:
    from playwright.sync_api import expect

    cell = "import wandb\nfor step in range(3):\n    wandb.log({'loss': 1 / (step + 1), 'eval/acc': 0.25 * step})"
    outcome = core.get_split().execute(cell, CellOptions(site="home", name="tune", wandb=True), None, lambda e: None)
    assert outcome.state == "succeeded", outcome.reason

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    widen_sidebar(page)
    pane = sidebar.locator(".jp-split-section[data-section='wandb']")
    row = pane.locator(".jp-split-wandb")
    expect(row).to_have_count(1, timeout=30_000)
    expect(row).to_contain_text("offline")
    expect(row.locator(".jp-split-detail")).to_contain_text("home")
    expect(row.locator(".jp-split-detail")).to_contain_text("loss=0.3333")
    expect(row).to_have_attribute("aria-label", f"W&B run {outcome.run_id} on home, offline, finished")
    shot(pane, "wandb")
