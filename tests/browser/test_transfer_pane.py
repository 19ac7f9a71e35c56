"""A copy watched and cancelled from the checkpoints pane, in a real JupyterLab and Chromium: a pull from
an SFTP site (the test sshd) behind a slow link shows its progress, bytes, rate and time left; its
cancel leaves home as it was; a second pull completes and its checkpoint shows at home."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from jupyter_split import sync
from tests.server.test_transfers import abroad_store  # noqa: F401 - the fixture, shared

from .conftest import Lab, shot, widen_sidebar
from .test_sidebar import _open_lab, _open_sidebar

pytestmark = pytest.mark.slow

# through its link (2 MB/s), a 15 MB pull takes some 8 s: time to watch and cancel it
SIZE = 15_000_000
SHARDS = 30


@pytest.fixture
def slow_abroad(abroad_store: Path, tmp_path: Path) -> Path:
    """sg's storage over SFTP through the slow link (the server tests' `abroad_store`), with a 15 MB checkpoint."""
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(SHARDS):  # many shards: the bytes of a file going over SFTP are counted as it completes
        (folder / f"shard-{i:02d}.bin").write_bytes(bytes([i]) * (SIZE // SHARDS))
    sync.copy(str(folder), (abroad_store / "ckpts" / "big").as_uri(), progress=False, site="sg")  # straight to its folder
    return abroad_store


def test_a_pull_is_watched_cancelled_and_done_again(slow_abroad: Path, split_home: Path, page, lab: Lab) -> None:
    from playwright.sync_api import expect

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    widen_sidebar(page)
    pane = sidebar.locator(".jp-split-section[data-section='checkpoints']")
    big = pane.locator(".jp-split-checkpoint", has=page.locator("b", has_text=re.compile(r"^ckpts/big$"))).filter(
        has_text="sg ·")
    pull = big.locator(".jp-split-transfer")
    expect(pull).to_have_text("pull → home", timeout=60_000)
    expect(pull).to_be_enabled()

    # The copy runs on the server; its row shows the bytes moving, the rate and the time left.
    pull.click()
    progress = big.locator(".jp-split-progress")
    expect(progress).to_be_visible()
    expect(pull).to_be_disabled()  # one copy of a checkpoint at a time
    # (the first bytes go once the copy has read both sides' manifests, over the slow link)
    expect(progress).to_contain_text(re.compile(r"[\d.]+ [KM]B of 15 MB · \d+ of 30 files · [\d.]+ [KM]B/s · \d+s left"),
                                     timeout=30_000)
    bar = progress.locator("progress")
    expect(bar).to_have_attribute("aria-label", "Copy of ckpts/big to home")
    shot(pane, "transfer")

    # Cancelled part way: home's published checkpoints are as they were.
    progress.locator(".jp-split-cancel-transfer").click()
    ended = big.locator(".jp-split-transfer-state")
    expect(ended).to_have_attribute("data-state", "cancelled", timeout=60_000)
    expect(ended).to_have_attribute("title", re.compile("is as it was"))
    expect(ended).to_contain_text(re.compile(r"^cancelled: the copy of sg:ckpts/big to site 'home' was cancelled after"))
    at_home = pane.locator(f".jp-split-checkpoint[data-url='file://{split_home}/home-store/ckpts/big']")
    expect(at_home).to_have_count(0)

    # Pulled again, it completes (resuming from the staged files) and shows at home.
    expect(pull).to_be_enabled()
    pull.click()
    expect(ended).to_have_attribute("data-state", "succeeded", timeout=120_000)
    # it sends what the cancelled one had not staged (all of it may have been: then nothing is left to send)
    expect(ended).to_contain_text(re.compile(r"copied to home · ([\d.]+ [KM]?B of [\d.]+ [KM]?B|nothing left to send)"))
    expect(at_home).to_have_count(1, timeout=30_000)

