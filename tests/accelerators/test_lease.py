"""The lease: accelerator-hours from the run index against each site's configured lease, from the
core, the CLI and `%split lease`; the cards a run holds recorded when it starts; the config's errors."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_split import core
from jupyter_split.accelerators.usage import leases, month_start
from jupyter_split.config import ConfigError, parse_config
from jupyter_split.core.outcome import CellOptions
from jupyter_split.runs.index import RunRecord
from tests.fixtures.core import text, write_config

CONFIG = """\
[experiment]
name = "t"
home = "home"
default_remote = "abroad"

[sites.home]
jurisdiction = "CN"
accelerator = "cpu"

[sites.abroad]
jurisdiction = "SG"
accelerator = "cuda"
lease = {{ gpu_hours = 100, price_per_gpu_hour = 2.5, currency = "usd", ends = "2027-03-31"{monthly} }}
"""
#: the 15th of a month, noon UTC: "now" in these tests
NOW = dt.datetime(2026, 12, 15, 12, tzinfo=dt.timezone.utc).timestamp()
HOUR = 3600.0


def record(run_id: str, site: str, start: float, end: float | None, cards: int | None, state: str = "succeeded",
           job: str | None = None) -> RunRecord:
    # no pid: the data directory's fixture kills the process groups of the pids it finds recorded
    handle = {"started": start, **({"cards": cards} if cards is not None else {}),
              **({"job_id": job} if job else {})}
    return RunRecord(run_id, site, f"/w/{run_id}", "detached", state=state, handle=handle, created=start,
                     updated=end if end is not None else start)


@pytest.fixture
def split(split_home: Path) -> core.Split:
    write_config(split_home, CONFIG.format(monthly=""))
    split = core.get_split()
    index = split.index
    index.add(record("t-abroad-old", "abroad", month_start(NOW) - 2 * HOUR, month_start(NOW) + HOUR, 4))  # 1 h this month
    index.add(record("t-abroad-done", "abroad", NOW - 10 * HOUR, NOW - 5 * HOUR, 2))
    index.add(record("t-abroad-going", "abroad", NOW - HOUR, None, 8, state="running"))
    index.add(record("t-abroad-before", "abroad", NOW - 3 * HOUR, NOW - 2 * HOUR, None))  # no cards recorded: one
    index.add(record("t-home-cpu", "home", NOW - 5 * HOUR, NOW, None))  # a cpu site holds no card
    return split


def test_hours_this_month_and_in_all_left_and_cost(split: core.Split) -> None:
    answer = leases(split, now=NOW)
    abroad = next(s for s in answer["sites"] if s["site"] == "abroad")
    # 4 cards x 3 h + 2 x 5 h + 8 x 1 h (still running) + 1 x 1 h (the default card)
    assert abroad["hours"] == 12 + 10 + 8 + 1
    assert abroad["month_hours"] == 4 + 10 + 8 + 1
    assert abroad["left"] == 100 - 31 and abroad["cost"] == 31 * 2.5 and abroad["month_cost"] == 23 * 2.5
    assert abroad["currency"] == "USD" and abroad["lease"]["ends"] == "2027-03-31" and abroad["days_left"] == 106
    runs = {r["run_id"]: r for r in abroad["runs"]}
    assert runs["t-abroad-before"]["source"] == "default" and runs["t-abroad-done"]["cost"] == 25.0
    home = next(s for s in answer["sites"] if s["site"] == "home")
    assert home["hours"] == 0 and home["left"] is None and home["cost"] is None and not home["configured"]
    assert answer["experiment"] == {"name": "t", "hours": 31, "cost": {"USD": 77.5}}


def test_a_monthly_lease_counts_this_month_only(split_home: Path, split: core.Split) -> None:
    write_config(split_home, CONFIG.format(monthly=", monthly = true"))
    abroad = leases(core.get_split(), "abroad", now=NOW)["sites"][0]
    assert abroad["left"] == 100 - 23 and abroad["lease"]["monthly"]


def test_the_cards_a_run_holds_are_recorded_when_it_starts(split_home: Path) -> None:
    write_config(split_home, CONFIG.format(monthly="").replace('accelerator = "cuda"', 'accelerator = "auto"'))
    split = core.get_split()
    on_cpu = split.execute("pass", CellOptions(site="home", detach=True), None, lambda e: None)
    on_cards = split.execute("pass", CellOptions(site="abroad", detach=True, gpus=2), None, lambda e: None)
    assert split.index.get(on_cpu.run_id).handle["cards"] == 0
    assert split.index.get(on_cards.run_id).handle["cards"] == 2


def test_cli_lease_prints_each_site_beside_its_use(split: core.Split, split_home: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "jupyter_split.cli", "lease", "--runs"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["site", "leased"]
    abroad = next(line for line in lines if line.startswith("abroad "))
    assert "100 h" in abroad and "2027-03-31" in abroad and "USD" in abroad
    assert any(line.startswith("experiment 't':") and "USD" in line for line in lines)
    assert any(line.startswith("t-abroad-done") for line in lines)
    as_json = subprocess.run([sys.executable, "-m", "jupyter_split.cli", "lease", "abroad", "--json"],
                             capture_output=True, text=True, timeout=120)
    assert json.loads(as_json.stdout)["sites"][0]["lease"]["gpu_hours"] == 100


@pytest.mark.slow
def test_magic_lease_prints_the_same_table(split: core.Split, kernel) -> None:
    shown = text(kernel.ok("%split lease"))
    assert shown.splitlines()[0].split()[:2] == ["site", "leased"]
    assert any(line.startswith("abroad ") and "100 h" in line for line in shown.splitlines())


@pytest.mark.parametrize(("lease", "says"), [
    ("{ gpu_hours = -5 }", "`sites.a.lease.gpu_hours`: -5.0 is not a number of hours or a price: give 0 or more"),
    ('{ currency = "dollars" }', "`sites.a.lease.currency`: 'dollars' is not an ISO 4217 currency code"),
    ('{ ends = "31/03/2027" }', 'write it as "YYYY-MM-DD"'),
    ("{ price = 2 }", "unknown key `sites.a.lease.price`: remove it or fix its spelling"),
])
def test_a_bad_lease_names_the_file_the_key_and_the_fix(lease: str, says: str) -> None:
    import tomllib

    raw = tomllib.loads(f'[experiment]\nhome = "a"\ndefault_remote = "a"\n[sites.a]\njurisdiction = "CN"\nlease = {lease}\n')
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "conf.toml")
    assert str(err.value).startswith("conf.toml: invalid config") and says in str(err.value)


def test_a_toml_date_is_a_day_too() -> None:
    import tomllib

    raw = tomllib.loads('[experiment]\nhome = "a"\ndefault_remote = "a"\n[sites.a]\njurisdiction = "CN"\n'
                        "lease = { ends = 2027-03-31 }\n")
    assert parse_config(raw, "conf.toml").sites["a"].lease.ends == dt.date(2027, 3, 31)
