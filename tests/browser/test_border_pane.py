"""The border pane and the guarded transfer buttons in a real JupyterLab and Chromium: the policy in force,
a real refusal from the audit log, the filter and its counts, declassify with a required reason and a
confirmation (an audit line), and push buttons the guard's dry run disables with its reason."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jupyter_split import core
from jupyter_split.policy import ResidencyError
from jupyter_split.server.transfer import copy_to_site

from .conftest import Lab, shot, two_sites, widen_sidebar
from .test_sidebar import _open_lab, _open_sidebar, _publish

pytestmark = pytest.mark.slow


@pytest.fixture
def sites(split_home: Path) -> None:
    two_sites(split_home, "border")


def test_border_pane_declassifies_a_refusal_and_the_push_button_follows_the_guard(sites, page, lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    config = core.get_split().config  # the same config and data directory as the lab server's
    _publish(tmp_path / "pretrain", f"{config.sites['abroad'].storage}/ckpts/pretrain", site="abroad")
    _publish(tmp_path / "tuned", f"{config.sites['home'].storage}/ckpts/tuned", labels=["CN"], site="home")
    with pytest.raises(ResidencyError):  # a real push of CN-labelled weights abroad: refused, and audited
        copy_to_site(config, "home", "ckpts/tuned", "abroad")
    audit = config.audit_log_path()

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    widen_sidebar(page)
    checkpoints = sidebar.locator(".jp-split-section[data-section='checkpoints']")
    tuned = checkpoints.locator(".jp-split-checkpoint", has_text="ckpts/tuned")
    push = tuned.locator(".jp-split-transfer")

    # The guard's dry run disables the push of resident weights, and the row says why.
    expect(push).to_have_attribute("data-check", "refused")
    expect(push).to_be_disabled()
    expect(push).to_have_text("push → abroad")
    expect(tuned.locator(".jp-split-refusal")).to_have_text("not to abroad: residency label CN must stay")
    expect(tuned.locator(".jp-split-refusal")).to_have_attribute("title", re.compile(r"CN data must stay in CN", re.S))
    pull = checkpoints.locator(".jp-split-checkpoint", has_text="ckpts/pretrain").locator(".jp-split-transfer")
    expect(pull).to_have_attribute("data-check", "allowed")
    expect(pull).to_be_enabled()

    # The policy in force, and the audit log's decisions with their counts.
    border = sidebar.locator(".jp-split-section[data-section='border']")
    policy = border.locator(".jp-split-policy")
    expect(policy).to_contain_text("home: home (CN)")
    expect(policy).to_contain_text("sites: home CN, abroad SG")
    expect(policy).to_contain_text("metrics abroad: every metric")
    expect(policy).to_contain_text("resident: file:///data/pii/**")
    expect(policy).to_contain_text("from jupyter_split.toml")
    expect(border.locator(".jp-split-decision[data-decision='refused']")).to_have_text("Refused 1")
    expect(border.locator(".jp-split-decision[data-decision='allowed']")).to_have_text("Allowed 1")  # the publication abroad
    expect(border.locator(".jp-split-decision[data-decision='all']")).to_have_text("All 2")
    expect(border.locator(".jp-split-entry")).to_have_count(2)

    # The filter shows the refusals alone, and says which filter is on.
    refused_filter = border.locator(".jp-split-decision[data-decision='refused']")
    refused_filter.click()
    expect(refused_filter).to_have_attribute("aria-pressed", "true")
    entries = border.locator(".jp-split-entry")
    expect(entries).to_have_count(1)
    refusal = entries.first
    expect(refusal).to_have_attribute("data-decision", "refused")
    expect(refusal).to_contain_text("home → abroad · copy · CN")
    expect(refusal.locator(".jp-split-what")).to_have_text("home:ckpts/tuned")  # its URL, by the site it lies on
    shot(border, "border")

    # Declassify: the dialog will not go ahead without a reason; with one, the server audits it.
    audited = audit.read_bytes()
    refusal.locator(".jp-split-declassify").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Declassify")
    expect(dialog).to_contain_text("Declassify home:ckpts/tuned? It may then leave CN")
    confirm = dialog.locator(".jp-mod-warn")
    expect(confirm).to_be_disabled()
    shot(dialog.locator(".jp-Dialog-content"), "declassify")
    dialog.locator(".jp-split-reason-input").fill("approved by the DPO, ticket DPO-7")
    expect(confirm).to_be_enabled()
    confirm.click()
    expect(dialog).to_have_count(0)

    expect(border.locator(".jp-split-decision[data-decision='declassified']")).to_have_text("Declassified 1")
    lines = [json.loads(line) for line in audit.read_bytes()[len(audited):].splitlines()]
    assert [(r["decision"], r["kind"], r["reason"]) for r in lines] == [
        ("declassified", "declassify", "approved by the DPO, ticket DPO-7")]
    border.locator(".jp-split-decision[data-decision='declassified']").click()
    expect(border.locator(".jp-split-entry")).to_have_count(1)
    expect(border.locator(".jp-split-entry").first).to_contain_text("approved by the DPO, ticket DPO-7")

    # The guard asked again: the push now goes, and the copy arrives abroad.
    expect(push).to_have_attribute("data-check", "allowed")
    expect(tuned.locator(".jp-split-refusal")).to_have_count(0)
    shot(checkpoints, "checkpoints")
    push.click()
    expect(tuned.locator(".jp-split-transfer-state")).to_have_attribute("data-state", "succeeded")
    expect(checkpoints.locator(f".jp-split-checkpoint[data-url='{config.sites['abroad'].storage}/ckpts/tuned']")).to_have_count(1)


def test_declassify_dialog_cancelled_or_blank_declassifies_nothing(sites, page, lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    config = core.get_split().config
    _publish(tmp_path / "tuned", f"{config.sites['home'].storage}/ckpts/tuned", labels=["CN"], site="home")
    with pytest.raises(ResidencyError):
        copy_to_site(config, "home", "ckpts/tuned", "abroad")
    audited = config.audit_log_path().read_bytes()

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    refusal = sidebar.locator(".jp-split-entry[data-decision='refused']")
    dialog = page.locator(".jp-Dialog")
    # Cancelled: nothing written.
    refusal.locator(".jp-split-declassify").click()
    dialog.locator(".jp-split-reason-input").fill("changed my mind")
    dialog.locator(".jp-mod-reject").click()
    # Enter with a blank reason (the one way past the disabled button): nothing written either.
    refusal.locator(".jp-split-declassify").click()
    dialog.locator(".jp-split-reason-input").fill("   ")
    expect(dialog.locator(".jp-mod-warn")).to_be_disabled()
    dialog.locator(".jp-split-reason-input").press("Enter")
    expect(dialog).to_have_count(0)
    page.wait_for_timeout(1000)  # two polls: a declassification would have been counted by now
    expect(sidebar.locator(".jp-split-decision[data-decision='declassified']")).to_have_text("Declassified 0")
    assert config.audit_log_path().read_bytes() == audited


def test_border_pane_counts_today_and_filters_by_site_kind_and_period(sites, page, lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from jupyter_split import policy

    config = core.get_split().config
    _publish(tmp_path / "pretrain", f"{config.sites['abroad'].storage}/ckpts/pretrain", site="abroad")  # allowed
    _publish(tmp_path / "tuned", f"{config.sites['home'].storage}/ckpts/tuned", labels=["CN"], site="home")
    with pytest.raises(ResidencyError):
        copy_to_site(config, "home", "ckpts/tuned", "abroad")  # refused today
    policy.declassify(f"{config.sites['home'].storage}/ckpts/other", "approved by the DPO, ticket DPO-9", config=config)
    # a refusal of last year: counted all time, not today
    audit = config.audit_log_path()
    old = next(r for r in map(json.loads, audit.read_text().splitlines()) if r["decision"] == "refused")
    old.update(ts=1_735_700_000.0, time="2025-01-01T03:33:20+00:00", item=f"{old['item']}-old")
    with audit.open("a") as log:
        log.write(json.dumps(old) + "\n")

    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    widen_sidebar(page)
    border = sidebar.locator(".jp-split-section[data-section='border']")
    decision = lambda name: border.locator(f".jp-split-decision[data-decision='{name}']")  # noqa: E731

    # At a glance: what the border refused and declassified today, beside the counts of all time.
    today = border.locator(".jp-split-today")
    expect(today.locator("[data-decision='refused']")).to_have_text("1 refused")
    expect(today.locator("[data-decision='declassified']")).to_have_text("1 declassified")
    expect(today).to_have_attribute("aria-label", "today: 1 refused · 1 declassified")
    expect(decision("refused")).to_have_text("Refused 2")
    expect(decision("all")).to_have_text("All 4")
    assert any("today=" in url for url in asked if "/jupyter-split/border" in url), asked

    # The kinds the audit log holds are the kind filter's choices; declassifications alone.
    kind = border.locator("select[aria-label='Show decisions of kind']")
    expect(kind.locator("option")).to_have_text(["any kind", "copy", "declassify"])
    kind.select_option("declassify")
    expect(border.locator(".jp-split-entry")).to_have_count(1)
    expect(border.locator(".jp-split-entry").first).to_have_attribute("data-decision", "declassified")
    expect(decision("all")).to_have_text("All 1")
    expect(today).to_contain_text("today, filtered:")

    # By site (either end of a transfer): abroad saw the publication and the two refused pushes.
    kind.select_option("")
    site = border.locator("select[aria-label='Show decisions of site']")
    expect(site.locator("option")).to_have_text(["every site", "home", "abroad"])
    site.select_option("abroad")
    expect(border.locator(".jp-split-entry")).to_have_count(3)
    expect(decision("refused")).to_have_text("Refused 2")

    # By period: today leaves last year's refusal out, and the server is asked from the page's midnight.
    period = border.locator("select[aria-label='Show decisions of']")
    period.select_option(label="today")
    expect(decision("refused")).to_have_text("Refused 1")
    expect(border.locator(".jp-split-entry")).to_have_count(2)
    assert any("since=" in url for url in asked if "/jupyter-split/border" in url), asked
    decision("refused").click()
    expect(border.locator(".jp-split-entry")).to_have_count(1)
    expect(border.locator(".jp-split-entry").first).to_contain_text("home:ckpts/tuned")
    shot(border, "border-filtered")

    # Nothing passes: the pane says so (a declassification names no site), and all filters off show everything.
    expect(kind.locator("option")).to_have_text(["any kind", "copy"])  # the kinds under the site and period
    decision("declassified").click()
    expect(border.locator(".jp-split-empty")).to_have_text("No declassified decision passes the filters.")
    for select, value in ((site, ""), (period, "0")):
        select.select_option(value)
    decision("all").click()
    expect(border.locator(".jp-split-entry")).to_have_count(4)
