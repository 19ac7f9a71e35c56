"""Sessions on an ssh site (the test sshd on 127.0.0.1), against a real session runner there: warm, busy
with a second client's cell queued, its memory read over the site's existing connection (no new login
per report), stop (both runs cancelled, not failed) and restart (the next cell runs, in a fresh namespace)."""
from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_split import aio, core
from jupyter_split.config import parse_config
from jupyter_split.core import sessions
from tests.sessions.cells import Cell, until

pytestmark = pytest.mark.slow


def test_an_ssh_sites_session_read_stopped_and_restarted_over_its_connection(sshd, split_home: Path) -> None:
    raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
           "sites": {"sg": sshd.site(), "home": {"jurisdiction": "CN"}}}

    def make() -> core.Split:  # each client (another notebook) reads the config for itself
        return core.Split(parse_config(raw, "test"))

    split = make()
    assert sessions.sessions(split, "sg")["sites"][0]["state"] == "gone"
    assert Cell("kept = 1", "sg", make).result().state == "succeeded"
    warm = until(split, "sg", lambda r: r["state"] == "warm", "a warm session")
    assert warm["executor"] == "ssh" and warm["pid"] and warm["memory"] > 1 << 20 and not warm["errors"]
    connected = sorted(sshd.connection_pids())
    assert sessions.sessions(split, "sg")["sites"][0]["pid"] == warm["pid"]
    assert sorted(sshd.connection_pids()) == connected, "a new SSH login per report"

    busy = Cell("import time\nprint('going', flush=True)\ntime.sleep(300)", "sg", make)
    until(split, "sg", lambda r: r["state"] == "busy", "a busy session")
    waiting = Cell("print(kept)", "sg", make)
    row = until(split, "sg", lambda r: r["queue"], "the second client's cell queued")
    assert row["running"]["cell"] == "import time" and [q["cell"] for q in row["queue"]] == ["print(kept)"]
    assert sorted(sshd.connection_pids()) == connected, "a new SSH login per report"

    stopped = sessions.stop(split, "sg")
    assert [c["run_id"] for c in stopped["cancelled"]] == [row["running"]["run_id"], row["queue"][0]["run_id"]]
    assert {c["state"] for c in stopped["cancelled"]} == {"cancelled"}
    assert busy.result().state == waiting.result().state == "cancelled"  # cancelled, never failed
    assert sessions.sessions(split, "sg")["sites"][0]["state"] == "gone"

    restarted = sessions.restart(split, "sg")
    assert restarted["session"]["state"] == "warm" and restarted["session"]["pid"] != warm["pid"]
    after = Cell("print('kept' in dir())", "sg", make)
    assert after.result().state == "succeeded" and after.text == "False\n"
    assert sessions.stop(split, "sg")["stopped"]
    aio.run(split.executor("sg").close())


def test_a_warm_cell_goes_on_a_channel_opened_ahead_and_asks_nothing_else(sshd, split_home: Path, monkeypatch) -> None:
    """A warm cell's request goes out at once, on the channel opened for it while the cell before ran, with
    its request inside (no file written first) and no check that the session lives (the open channel says
    so): one round trip to its records. A session that ended since is found out, and the cell still runs."""
    from jupyter_split.core.outcome import CellOptions
    from jupyter_split.ssh.connection import SiteConnection

    raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
           "sites": {"sg": sshd.site(), "home": {"jurisdiction": "CN"}}}
    split = core.Split(parse_config(raw, "test"))
    asked: list[str] = []
    for name in ("open_unix", "read_pseudo", "write_file", "read_file"):
        real = getattr(SiteConnection, name)

        async def counted(self, *args, _real=real, _name=name, **kwargs):
            asked.append(_name)
            return await _real(self, *args, **kwargs)
        monkeypatch.setattr(SiteConnection, name, counted)
    printed: list[str] = []

    def cell(code: str) -> str:
        printed.clear()
        outcome = split.execute(code, CellOptions(site="sg"), {}, lambda e: printed.append(e.get("text", "")))
        assert outcome.state == "succeeded", outcome
        return "".join(printed)

    cell("n = 0")  # starts the session
    for i in (1, 2, 3):
        asked.clear()
        assert cell("n += 1\nprint(n)") == f"{i}\n"
        assert asked == [], f"warm cell {i} asked the site {asked} besides its request"

    sessions.stop(split, "sg")  # the session ends: its runner closes the channel kept for the next cell
    assert cell("print('n' in dir())") == "False\n"  # a new session, found without a retry by hand
    aio.run(split.executor("sg").close())
