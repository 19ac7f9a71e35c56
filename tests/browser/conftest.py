"""A real `jupyter lab` with the built sidebar, and Debian's Chromium driven by Playwright."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
EXTENSION_SRC = REPO / "extensions" / "jupyterlab-split"
BUILT = REPO / "jupyter_split" / "labextension"
SERVER_CONFIG = REPO / "jupyter-config" / "jupyter_server_config.d" / "jupyter_split.json"
ARTIFACTS = REPO / "test-artifacts"
#: the README's pictures of the sidebar, each taken by a browser test from the real UI: into docs/sidebar
#: where SPLIT_SCREENSHOTS=docs asks to refresh them, else beside the other test artifacts (a run's ids
#: and times differ, so every run would change the committed pictures)
SCREENSHOTS = REPO / "docs" / "sidebar" if os.environ.get("SPLIT_SCREENSHOTS") == "docs" else ARTIFACTS / "sidebar"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def labextension() -> Path:
    """The built labextension; built here with jlpm (it ships with jupyterlab) when the tree has none."""
    if not (BUILT / "package.json").is_file():
        jlpm = shutil.which("jlpm", path=str(Path(sys.executable).parent)) or shutil.which("jlpm")
        assert jlpm and shutil.which("node"), "building the sidebar needs node and jlpm (pip install jupyterlab)"
        for step in (["install"], ["build:prod"]):
            done = subprocess.run([jlpm, *step], cwd=EXTENSION_SRC, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"jlpm {' '.join(step)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return BUILT


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


class Lab:
    def __init__(self, url: str, token: str, process: subprocess.Popen, log: Path):
        self.url, self.token, self.process, self.log = url, token, process, log

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])


@pytest.fixture
def lab(split_home: Path, labextension: Path) -> Iterator[Lab]:
    """`jupyter lab` on 127.0.0.1 with its own config, data and settings; the extension comes from the tree."""
    state = split_home / "lab"
    jupyter_path = state / "path"
    (jupyter_path / "labextensions").mkdir(parents=True)
    (jupyter_path / "labextensions" / "jupyterlab-split").symlink_to(labextension)
    config_dir = state / "config"
    # The very file the wheel installs is what enables the server extension here.
    (config_dir / "jupyter_server_config.d").mkdir(parents=True)
    shutil.copy(SERVER_CONFIG, config_dir / "jupyter_server_config.d" / SERVER_CONFIG.name)
    settings = state / "settings"
    _write_json(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    _write_json(settings / "jupyterlab-split" / "plugin.jupyterlab-settings", {"refreshInterval": 0.5})

    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_PATH": str(jupyter_path),
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_DATA_DIR": str(state / "data"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    log = state / "lab.log"
    # port 0: the server takes a port the system gives it as it listens; one picked here beforehand could be
    # taken by another process meanwhile (the tests run on several workers)
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={split_home / 'work'}",
            "--ServerApp.log_level=INFO",
            # window.jupyterapp: the tests switch the theme with its own command, as the Settings menu does
            "--LabApp.expose_app_in_browser=True"]
    # The token goes in the environment, not on the command line that `ps` shows.
    env["JUPYTER_TOKEN"] = token
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, cwd=split_home / "work", env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    lab = Lab("", token, process, log)
    try:
        lab.url = f"http://127.0.0.1:{_served_port(lab, state / 'runtime')}"
        _wait_ready(lab)
        yield lab
    finally:
        _stop(process)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / "jupyter-lab.log")


def _served_port(lab: Lab, runtime: Path, timeout: float = 90) -> int:
    """The port the server listens on, from the file it writes in its runtime folder once it serves."""
    info = runtime / f"jpserver-{lab.process.pid}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise AssertionError(f"jupyter lab exited with {lab.process.returncode}:\n{lab.log_tail()}")
        try:
            return int(json.loads(info.read_text())["port"])
        except (FileNotFoundError, ValueError, KeyError):  # not written yet, or half written
            time.sleep(0.2)
    raise AssertionError(f"jupyter lab wrote no {info.name} in {timeout}s:\n{lab.log_tail()}")


def _wait_ready(lab: Lab, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"{lab.url}/jupyter-split/sites", headers={"Authorization": f"token {lab.token}"})
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise AssertionError(f"jupyter lab exited with {lab.process.returncode}:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"jupyter lab did not serve /jupyter-split/sites in {timeout}s:\n{lab.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def page(lab: Lab, request: pytest.FixtureRequest):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
            # What the page last showed, pass or fail: the first thing to look at when a run goes wrong.
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"))
        finally:
            browser.close()


def shot(target, name: str) -> Path:
    """Save a picture of `target` (a Playwright locator: a pane, the sidebar) as docs/sidebar/NAME.png,
    the README's own, after the page has settled (no poll's change half drawn)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    target.page.wait_for_timeout(300)
    target.screenshot(path=str(path), animations="disabled")
    return path


def widen_sidebar(page, width: int = 440) -> None:
    """Drag the left area's edge to `width` pixels, as a user widens the sidebar to read it."""
    box = page.locator("#jp-left-stack").bounding_box()
    assert box, "the left area is not shown"
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] + 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + width, y, steps=5)
    page.mouse.up()


def two_sites(split_home: Path, name: str, home: str = "", abroad: str = "", more: str = "") -> None:
    """Write the config of the pictures' experiment `name`: `home` (local, CN) and `abroad` (local, SG), each
    storing under the test's data directory, a policy whose resident data lies elsewhere (so no path of the
    machine shows in a picture), and `home`/`abroad`/`more`: TOML lines added to each site's table and after."""
    from tests.fixtures.core import write_config

    storage = split_home / "data" / "storage"
    write_config(split_home, f"""\
[experiment]
name = "{name}"
home = "home"
default_remote = "abroad"

[sites.home]
jurisdiction = "CN"
storage = "{(storage / 'home').as_uri()}"
{home}

[sites.abroad]
jurisdiction = "SG"
storage = "{(storage / 'abroad').as_uri()}"
{abroad}

[policy]
resident = ["file:///data/pii/**"]
{more}
""")
