"""`top`: the probe through the local executor and through the SSH executor (a real sshd), with the
vendor tool stand-ins on PATH; the cards' runs; the table from the CLI and from `%split top`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_split import aio, core
from jupyter_split.accelerators.poll import poller, read_site
from jupyter_split.config import parse_config
from jupyter_split.core.outcome import CellOptions
from tests.accelerators.conftest import stand_in_path
from tests.fixtures.core import text, write_config

CONFIG = """\
[experiment]
name = "t"
home = "home"
default_remote = "abroad"

[accelerators]
interval = {interval}

[sites.home]
jurisdiction = "CN"
accelerator = "npu"
visible_devices = "1"

[sites.abroad]
jurisdiction = "SG"
"""


def test_local_probe_reads_every_tool_the_host_and_the_run_on_a_card(split_home: Path, stand_ins: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(split_home, CONFIG.format(interval=60))
    split = core.get_split()
    outcome = split.execute("import time\ntime.sleep(60)", CellOptions(site="home", detach=True), None, lambda e: None)
    pid = split.index.get(outcome.run_id).handle["pid"]
    monkeypatch.setenv("STANDIN_SMI_PIDS", f"0:{pid}")  # the runner's process is on card 0 of each tool
    reading = aio.run(read_site(split, split.config.site("home")))
    node = reading["nodes"][0]
    assert not reading["errors"] and not node["errors"], reading
    assert set(node["tools"]) == {"nvidia-smi", "npu-smi", "cnmon", "mthreads-gmi", "hy-smi"}  # rocm-smi: hy-smi's
    assert node["node"] == os.uname().nodename
    assert node["cpu"]["count"] == os.cpu_count() and 0 <= node["cpu"]["percent"] <= 100
    assert 0 < node["memory"]["used"] < node["memory"]["total"]
    held = {(c["vendor"], c["index"]): c["run"] for c in node["cards"]}
    assert held[("nvidia", 0)] == held[("huawei", 0)] == held[("mthreads", 0)] == outcome.run_id
    assert held[("nvidia", 1)] is None
    # hy-smi lists no processes: the site's visible_devices name the card the running run holds
    assert held[("hygon", 1)] == outcome.run_id and held[("hygon", 0)] is None
    split.cancel(outcome.run_id)


def test_readings_are_reused_within_the_interval(split_home: Path, stand_ins: Path) -> None:
    write_config(split_home, CONFIG.format(interval=60))
    first = poller(core.get_split()).readings("home")
    again = poller(core.get_split()).readings()
    assert first["interval"] == 60
    assert again["sites"][0]["time"] == first["sites"][0]["time"]  # home's reading, reused
    assert {s["site"] for s in again["sites"]} == {"home", "abroad"}


def test_unknown_site_names_the_known_ones(split_home: Path) -> None:
    write_config(split_home, CONFIG.format(interval=5))
    done = subprocess.run([sys.executable, "-m", "jupyter_split.cli", "top", "nowhere"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "unknown site 'nowhere'" in done.stderr and "abroad, home" in done.stderr


def test_cli_top_prints_the_table_per_site_and_node(split_home: Path, stand_ins: Path) -> None:
    write_config(split_home, CONFIG.format(interval=5))
    env = {**os.environ, "STANDIN_SMI_CARDS": "1"}
    done = subprocess.run([sys.executable, "-m", "jupyter_split.cli", "top"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["site", "node", "#", "device", "use", "memory", "temp", "power", "run"]
    host = os.uname().nodename
    for site in ("home", "abroad"):
        rows = [line.split() for line in lines[1:] if line.split()[:2] == [site, host]]
        assert rows[0][3] == "cpu" and len(rows) == 6, lines  # the host, then one card per tool (5)
    assert any("910B3" in line and "40C" in line and "1.0/64.0 GiB" in line for line in lines)
    as_json = subprocess.run([sys.executable, "-m", "jupyter_split.cli", "top", "home", "--json"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(as_json.stdout)["sites"][0]["nodes"][0]["cards"][0]["vendor"]


@pytest.mark.slow
def test_magic_top_prints_the_same_table(stand_ins: Path, split_home: Path, kernel) -> None:
    write_config(split_home, CONFIG.format(interval=5))
    kernel.ok("from jupyter_split import core; core.reset()")
    shown = text(kernel.ok("%split top home"))
    assert shown.splitlines()[0].split()[:4] == ["site", "node", "#", "device"]
    assert "MTT S4000" in shown and "MLU370-X8" in shown


@pytest.mark.slow
def test_ssh_probe_runs_on_the_sites_connection_with_the_stand_ins(sshd, split_home: Path) -> None:
    site = sshd.site(env={"PATH": stand_in_path(), "STANDIN_SMI_CARDS": "2"}, accelerator="cuda")
    raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
           "sites": {"sg": site, "home": {"jurisdiction": "CN"}}}
    split = core.Split(parse_config(raw, "test"))
    started = time.monotonic()
    first = aio.run(read_site(split, split.config.site("sg")))
    connected = sorted(sshd.connection_pids())
    second = aio.run(read_site(split, split.config.site("sg")))
    node = second["nodes"][0]
    assert not first["errors"] and not node["errors"], (first, second)
    assert {c["model"] for c in node["cards"]} >= {"NVIDIA H100 80GB HBM3", "910B3", "MTT S4000"}
    assert node["memory"]["total"] > 0 and node["cpu"]["count"] >= 1
    # the second probe used the site's one connection: no new login
    assert sorted(sshd.connection_pids()) == connected, "a new SSH connection per probe"
    assert time.monotonic() - started < 60
    aio.run(split.executor("sg").close())


def test_a_site_that_cannot_be_reached_is_a_row_and_an_error_not_a_traceback(split_home: Path, stand_ins: Path) -> None:
    from tests.services._proc import free_port

    write_config(split_home, CONFIG.format(interval=5) + f"""
[sites.down]
executor = "ssh"
host = "127.0.0.1"
port = {free_port()}
workdir = "/tmp/js-down"
connect_timeout = 2.0
jurisdiction = "SG"
""")
    done = subprocess.run([sys.executable, "-m", "jupyter_split.cli", "top"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert ["down", "-", "-", "not", "read"] == rows[[r[0] if r else "" for r in rows].index("down")][:5]
    assert any(line.startswith("down: site 'down'") for line in done.stdout.splitlines()), done.stdout
    assert any(r[:1] == ["home"] and "910B3" in r for r in rows)  # the other sites are read all the same
