"""The sites pane in a real JupyterLab and Chromium: each site's accelerators (the local site, an SSH
site and a Slurm site's job, with the vendor tool stand-ins; a Ray site's resources), the run holding a card, the lease, the
`%%remote_gpu` site; polls revalidated with If-None-Match, and the sidebar's feeds asked for only
while it (and the pane that shows them) is open. Real runs on the SSH and Slurm sites too: their rows in the
runs pane (site, final state, last line), the SSH run's output in the run panel, its session warm."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from jupyter_split import core
from jupyter_split.core.outcome import CellOptions
from tests.accelerators.conftest import stand_in_path
from tests.executors.test_ray import config as ray_config
from tests.executors.test_slurm import slurm_config
from tests.fixtures.core import write_config

from .conftest import Lab, shot, widen_sidebar
from .test_sidebar import _open_lab, _open_sidebar, _wait_log

pytestmark = pytest.mark.slow


def _toml(table: dict[str, Any]) -> str:
    """One inline TOML table of strings, numbers and tables (what a site's table holds)."""
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)
    return "\n".join(f"{k} = {value(v)}" for k, v in table.items())


@pytest.fixture
def sites_with_cards(split_home: Path, sshd, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """home (local, CN) and abroad (the test sshd, SG, with a lease), the vendor tools' STAND-INS on both
    (tests/stand_ins/bin: no such card exists here), and a real run on home that holds card 0 of each tool
    that lists processes. Set up before the lab starts: its server probes with this environment."""
    abroad = sshd.site(env={"PATH": stand_in_path(), "STANDIN_SMI_CARDS": "2"}, accelerator="cuda",
                       lease={"gpu_hours": 100, "price_per_gpu_hour": 2.5, "currency": "USD", "ends": "2099-12-31"})
    write_config(split_home, f"""\
[experiment]
name = "panes"
home = "home"
default_remote = "abroad"

[accelerators]
interval = 1

[sites.home]
executor = "local"
jurisdiction = "CN"
visible_devices = "1"
lease = {{ price_per_gpu_hour = 3, currency = "EUR" }}

[sites.abroad]
{_toml(abroad)}
""")
    monkeypatch.setenv("PATH", stand_in_path())
    split = core.get_split()
    # a real short cell on the SSH site, run to its end in that site's session (left warm)
    over_ssh = split.execute("print('hello from abroad over ssh', flush=True)\n6 * 7", CellOptions(site="abroad"),
                             None, lambda event: None)
    assert (over_ssh.site, over_ssh.state) == ("abroad", "succeeded"), over_ssh
    run = split.execute("import time\nprint('holding a card', flush=True)\ntime.sleep(600)",
                        CellOptions(site="home", detach=True), None, lambda event: None).run_id
    _wait_log(run, ended=False, text="holding a card")
    monkeypatch.setenv("STANDIN_SMI_PIDS", f"0:{split.index.get(run).handle['pid']}")
    yield {"run": run, "ssh_run": over_ssh.run_id}
    split.cancel(run)


def test_sites_pane_shows_cards_runs_lease_and_the_remote_gpu_site(sites_with_cards, page, lab: Lab) -> None:
    from playwright.sync_api import expect

    asked: list[tuple[str, str | None]] = []
    answered: list[tuple[str, int]] = []
    page.on("request", lambda r: asked.append((r.url, r.headers.get("if-none-match"))))
    page.on("response", lambda r: answered.append((r.url, r.status)))
    run = sites_with_cards["run"]

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    pane = sidebar.locator(".jp-split-section[data-section='sites']")
    home = pane.locator(".jp-split-site[data-site='home']")
    abroad = pane.locator(".jp-split-site[data-site='abroad']")

    # The home row says its name once: "home CN", not "home home CN"; %%remote_gpu goes abroad.
    expect(home.locator(".jp-split-site-head")).to_have_text("homeCN")
    expect(home).to_have_attribute("data-home", "true")
    expect(abroad).to_have_attribute("data-remote", "true")
    expect(abroad.locator(".jp-split-badge-remote")).to_have_text("%%remote_gpu")
    expect(home.locator(".jp-split-badge-remote")).to_have_count(0)

    # Every vendor's cards on home, read with the tools' stand-ins; the run holds card 0 of those that list processes.
    for vendor in ("nvidia", "huawei", "cambricon", "mthreads", "hygon"):
        expect(home.locator(f".jp-split-card[data-vendor='{vendor}']")).to_have_count(2)
    for vendor in ("nvidia", "huawei", "mthreads"):
        expect(home.locator(f".jp-split-card[data-vendor='{vendor}'][data-index='0']")).to_have_attribute("data-run", run)
    # hy-smi lists no processes: the site's visible_devices (1) say which card the running run holds
    expect(home.locator(".jp-split-card[data-vendor='hygon'][data-index='1']")).to_have_attribute("data-run", run)
    expect(home.locator(".jp-split-card[data-vendor='nvidia'][data-index='1']")).to_have_attribute("data-run", "")
    h100 = home.locator(".jp-split-card[data-vendor='nvidia'][data-index='0']")
    expect(h100).to_contain_text("NVIDIA H100 80GB HBM3")
    expect(h100).to_contain_text(re.compile(r"\d+% · [\d.]+/79\.6 GiB · \d+°C · \d+ W"))
    expect(h100).to_contain_text(f"run {run}")
    expect(home.locator(".jp-split-detail").first).to_contain_text("auto: nvidia, huawei, cambricon, mthreads, hygon")
    expect(home.locator(".jp-split-node .jp-split-detail").first).to_contain_text(re.compile(r"CPU \d+% of \d+ · memory"))

    # The SSH site: its cards read over its own connection, its lease as configured beside its use.
    expect(abroad.locator(".jp-split-card[data-vendor='nvidia']")).to_have_count(2)
    expect(abroad).to_contain_text("cuda · reachable")
    expect(abroad.locator(".jp-split-lease")).to_contain_text(re.compile(r"lease: 100 GPU-h left of 100 GPU-h · 0 GPU-h used"))
    expect(abroad.locator(".jp-split-lease")).to_contain_text("0.00 USD")
    expect(abroad.locator(".jp-split-lease")).to_have_attribute("data-lease", "ok")
    widen_sidebar(page)
    shot(pane, "sites")

    # The experiment's use of every lease, under its name; the host's name is said once, by its node.
    expect(sidebar.locator(".jp-split-use")).to_have_text(re.compile(r"^used: [\d.]+ GPU-h · [\d.]+ EUR · 0\.00 USD$"))
    expect(home).not_to_contain_text("host ")

    # What the run holding the card costs so far, from home's lease: its one card's hours at its price.
    expect(sidebar.locator(f".jp-split-run[data-run-id='{run}'] .jp-split-cost")).to_have_text(
        re.compile(r"^1 card · [\d.]+ GPU-h · [\d.]+ EUR$"))

    # Polls revalidate: the second ask of a feed sends the first answer's ETag, and nothing changed is a 304.
    page.wait_for_timeout(2500)  # five refresh intervals (0.5 s in these tests)
    for feed in ("runs", "border", "accelerators"):
        tags = [tag for url, tag in asked if re.search(rf"/jupyter-split/{feed}(\?|$)", url)]
        assert len(tags) >= 2 and tags[0] is None and all(tags[1:]), (feed, tags)
    assert any(status == 304 and "/jupyter-split/runs" in url for url, status in answered), answered[-20:]
    assert any(status == 304 and "/jupyter-split/border" in url for url, status in answered), answered[-20:]

    # While the sidebar is hidden its feeds stand by (the run count in the status bar still polls).
    page.locator(".jp-SideBar .lm-TabBar-tab[data-id='jupyter-split-sidebar']").click()
    expect(sidebar).to_be_hidden()
    page.wait_for_timeout(600)  # a poll under way when it closed may still land
    before = len(asked)
    page.wait_for_timeout(2500)
    later = [url for url, _ in asked[before:]]
    assert not [u for u in later if re.search(r"/jupyter-split/(accelerators|border|sites|lease|checkpoints)", u)], later
    assert any("/jupyter-split/runs" in u for u in later), later
    # Shown again, it asks at once.
    _open_sidebar(page)
    expect(pane.locator(".jp-split-site")).to_have_count(2)
    page.wait_for_timeout(1000)
    assert any("/jupyter-split/accelerators" in url for url, _ in asked[before:]), asked[before:]

    # A folded pane's feed stands by too: no card is asked for while the sites pane is folded.
    pane.locator(".jp-split-toggle").click()
    expect(pane.locator(".jp-split-toggle")).to_have_attribute("aria-expanded", "false")
    page.wait_for_timeout(600)
    folded = len(asked)
    page.wait_for_timeout(2500)
    later = [url for url, _ in asked[folded:]]
    assert not [u for u in later if "/jupyter-split/accelerators" in u], later
    assert any("/jupyter-split/border" in u for u in later), later  # the open panes' feeds go on
    pane.locator(".jp-split-toggle").click()
    page.wait_for_timeout(1000)
    assert any("/jupyter-split/accelerators" in url for url, _ in asked[folded:]), "an opened pane did not ask"

    # The SSH site's real run: its row in the runs pane (its site, its final state, its last line), its
    # output in the run panel, and the session it ran in, still warm on that site.
    ssh_run = sites_with_cards["ssh_run"]
    row = sidebar.locator(f".jp-split-run[data-run-id='{ssh_run}']")
    expect(row).to_have_attribute("data-state", "succeeded")
    expect(row.locator(".jp-split-row b")).to_have_text("abroad")
    expect(row.locator(".jp-split-id")).to_have_text(ssh_run)
    expect(row.locator(".jp-split-lastline")).to_have_text("hello from abroad over ssh")
    expect(sidebar.locator(f".jp-split-run[data-run-id='{run}'] .jp-split-row b")).to_have_text("home")
    sessions = sidebar.locator(".jp-split-section[data-section='sessions']")
    expect(sessions.locator(".jp-split-session[data-site='abroad']")).to_have_attribute("data-state", "warm")
    expect(sessions.locator(".jp-split-session[data-site='abroad']")).to_have_attribute("data-queued", "0")
    row.click()
    view = page.locator(f"#jupyter-split-run-{ssh_run} .jp-split-runview")
    expect(view.locator(".jp-split-runview-status")).to_have_attribute("data-state", "succeeded")
    expect(view).to_contain_text("hello from abroad over ssh")
    expect(view).to_contain_text("42")


@pytest.fixture
def slurm_site(slurm, split_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A Slurm site (the tests' one-node Slurm) with the vendor tools' STAND-INS on PATH, and a job of a
    real run on it. Set before the lab starts: its server reads the site with this environment."""
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", stand_in_path())  # the STAND-IN nvidia-smi: the job's step inherits it
    # no GPU here, so no GRES: what Slurm sets in a step bound to card 1 is set by hand (a stand-in)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    write_config(split_home, slurm_config(split_home) + "\n[accelerators]\ninterval = 1\n")
    split = core.get_split()
    # a real short cell on the Slurm site first (a job of its own, followed by the pane to its end)
    short = split.execute("print('hello from slurm', flush=True)\n6 * 7", CellOptions(site="cluster", detach=True),
                          None, lambda event: None).run_id
    run = split.execute("import time\ntime.sleep(300)", CellOptions(site="cluster", detach=True), None,
                        lambda event: None).run_id
    yield {"run": run, "job": split.index.get(run).handle["job_id"], "short": short}
    split.cancel(run)


def test_a_slurm_sites_nodes_jobs_and_the_cards_of_its_running_job(slurm_site, page, lab: Lab) -> None:
    from playwright.sync_api import expect

    run, job = slurm_site["run"], slurm_site["job"]
    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    cluster = sidebar.locator(".jp-split-site[data-site='cluster']")
    expect(cluster).to_have_attribute("data-remote", "true")
    # The login node, then the node of the running job with its cards: card 1 is bound to the job's run.
    expect(cluster.locator(".jp-split-node[data-role='login']")).to_contain_text("(login node)")
    compute = cluster.locator(f".jp-split-node[data-role='compute'][data-job='{job}']")
    expect(compute).to_contain_text(f"localhost (job {job}, run {run})", timeout=90_000)
    expect(compute.locator(".jp-split-card[data-vendor='nvidia'][data-index='1']")).to_have_attribute("data-run", run)
    expect(compute.locator(".jp-split-card[data-vendor='nvidia'][data-index='0']")).to_have_attribute("data-run", "")
    # Slurm's own view: its nodes, and this experiment's job with its run.
    slurm = cluster.locator(".jp-split-slurm")
    expect(slurm).to_contain_text("Slurm nodes: localhost")
    expect(slurm).to_contain_text(f"job {job} RUNNING ({run})")

    # The Slurm site's runs in the runs pane: the short one ended, with its site and last line; the long one
    # running; the short one's output in the run panel.
    short = slurm_site["short"]
    row = sidebar.locator(f".jp-split-run[data-run-id='{short}']")
    expect(row).to_have_attribute("data-state", "succeeded", timeout=90_000)
    expect(row.locator(".jp-split-row b")).to_have_text("cluster")
    expect(row.locator(".jp-split-lastline")).to_have_text("hello from slurm")
    long_row = sidebar.locator(f".jp-split-run[data-run-id='{run}']")
    expect(long_row).to_have_attribute("data-state", "running")
    expect(long_row.locator(".jp-split-row b")).to_have_text("cluster")
    widen_sidebar(page)
    shot(cluster, "slurm-site")


@pytest.fixture
def ray_site(ray_cluster, split_home: Path) -> None:
    write_config(split_home, ray_config(split_home, ray_cluster.address))


def test_a_ray_sites_resources(ray_site, page, lab: Lab) -> None:
    from playwright.sync_api import expect

    _open_lab(page, lab)
    sidebar = _open_sidebar(page)
    ray = sidebar.locator(".jp-split-site[data-site='ray'] .jp-split-ray")
    # the tests' Ray head: its CPUs, from its dashboard, and its one node
    expect(ray).to_have_text(re.compile(r"^Ray: (.* · )?CPU ([\d.]+/)?\d+ · (.* · )?1 of 1 node alive$"), timeout=60_000)
