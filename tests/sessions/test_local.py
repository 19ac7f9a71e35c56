"""Sessions on the local sites, against real session runners: the report's states, a cell queued by a
second client, stop (a runner that ignores SIGTERM included) and restart; the `session` verb from the
command line (its confirmation on a real terminal) and from `%split session` in a real kernel."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_split import core
from jupyter_split.core import sessions
from jupyter_split.core.sessions import SessionError
from tests.fixtures.core import on_a_terminal, text, write_config
from tests.sessions.cells import Cell, until

SLURM_SITE = """\
[experiment]
name = "t"
home = "home"
default_remote = "abroad"

[sites.home]
jurisdiction = "CN"

[sites.abroad]
jurisdiction = "SG"

[sites.cluster]
executor = "slurm"
jurisdiction = "SG"
workdir = "/scratch/split"
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    # no terminal on stdin, whoever runs the tests: the command does not ask
    return subprocess.run([sys.executable, "-m", "jupyter_split.cli", "session", *args], capture_output=True,
                          stdin=subprocess.DEVNULL, text=True, timeout=180)


def test_a_session_is_gone_then_warm_then_busy_with_another_clients_cell_queued(split_home: Path) -> None:
    assert sessions.sessions(core.get_split())["sites"] == [
        {"site": s, "executor": "local", "supported": True, "state": "gone", "session": None, "pid": None,
         "started": None, "memory": None, "running": None, "queue": [], "errors": []} for s in ("abroad", "home")]
    assert Cell("kept = 1").result().state == "succeeded"
    warm = until(core.get_split(), "home", lambda r: r["state"] == "warm", "a warm session")
    assert warm["pid"] and warm["memory"] > 1 << 20 and time.time() - 120 < warm["started"] <= time.time()
    busy = Cell("import time\nprint('going', flush=True)\ntime.sleep(300)")
    until(core.get_split(), "home", lambda r: r["state"] == "busy", "a busy session")
    queued = [Cell("print('second')")]  # two more clients, one after the other
    until(core.get_split(), "home", lambda r: len(r["queue"]) == 1, "one queued cell")
    queued.append(Cell("print('third')"))
    row = until(core.get_split(), "home", lambda r: len(r["queue"]) == 2, "two queued cells")
    assert row["running"]["cell"] == "import time" and row["running"]["state"] == "running"
    assert [(q["cell"], q["state"]) for q in row["queue"]] == [("print('second')", "queued"), ("print('third')", "queued")]
    assert row["pid"] == warm["pid"] and row["session"] == warm["session"]
    assert sessions.sessions(core.get_split(), "abroad")["sites"][0]["state"] == "gone"  # a site of its own

    stopped = sessions.stop(core.get_split(), "home")
    ids = [row["running"]["run_id"], *(q["run_id"] for q in row["queue"])]
    assert stopped["stopped"] and [c["run_id"] for c in stopped["cancelled"]] == ids
    assert {c["state"] for c in stopped["cancelled"]} == {"cancelled"}
    assert [c.result().state for c in (busy, *queued)] == ["cancelled"] * 3  # cancelled, never failed
    assert {core.get_split().index.get(i).state for i in ids} == {"cancelled"}
    assert sessions.sessions(core.get_split(), "home")["sites"][0]["state"] == "gone"


def test_cancel_of_a_queued_cell_takes_it_out_of_the_queue_and_the_session_goes_on(split_home: Path) -> None:
    assert Cell("kept = 41").result().state == "succeeded"
    busy = Cell("import time\nprint('going', flush=True)\ntime.sleep(4)\nkept += 1")
    warm = until(core.get_split(), "home", lambda r: r["state"] == "busy", "a busy session")
    dropped = Cell("print('never')")  # another notebook's cell, queued behind the busy one
    until(core.get_split(), "home", lambda r: len(r["queue"]) == 1, "one queued cell")
    after = Cell("print('kept is', kept)")
    row = until(core.get_split(), "home", lambda r: len(r["queue"]) == 2, "two queued cells")
    run_id = row["queue"][0]["run_id"]
    assert core.get_split().cancel(run_id) == "cancelled"
    assert dropped.result().state == "cancelled" and dropped.text == ""  # its follower hears it, it never ran
    assert busy.result().state == "succeeded"  # the running cell and the session went on
    assert after.result().state == "succeeded" and after.text == "kept is 42\n"
    assert core.get_split().index.get(run_id).state == "cancelled"
    row = until(core.get_split(), "home", lambda r: r["state"] == "warm", "a warm session")
    assert row["pid"] == warm["pid"]
    assert core.get_split().cancel(run_id) == "cancelled"  # an ended run is left alone


def test_a_cell_queued_while_the_runs_are_listed_is_listed_queued(split_home: Path) -> None:
    # The listing reads the index, brings its active rows up to date from their logs, and reads it again:
    # a cell queued in between was listed as its client added it, `running` (seen in the sidebar, CI).
    # Here its first read waits until another client's cell is queued, so the cell is always in between.
    busy = Cell("import time\nprint('going', flush=True)\ntime.sleep(300)")
    until(core.get_split(), "home", lambda r: r["state"] == "busy", "a busy session")
    watcher = core.Split()  # the sidebar's own client
    reads, queued = [], []
    plain = watcher.index.list

    def list_then_queue(*args: Any, **kwargs: Any) -> Any:
        rows = plain(*args, **kwargs)
        reads.append(rows)
        if len(reads) == 1:
            queued.append(Cell("print('queued')"))
            until(core.get_split(), "home", lambda r: len(r["queue"]) == 1, "one queued cell")
        return rows

    watcher.index.list = list_then_queue
    listed = {r.run_id: r.state for r in watcher.list_runs("home")}
    session = sessions.sessions(core.get_split(), "home")["sites"][0]
    assert len(reads) >= 2 and session["queue"][0]["run_id"] in listed
    assert listed[session["queue"][0]["run_id"]] == "queued", listed
    assert listed[session["running"]["run_id"]] == "running", listed
    stopped = sessions.stop(core.get_split(), "home")
    assert stopped["stopped"] and busy.result().state == queued[0].result().state == "cancelled"


def test_restart_gives_a_fresh_session_the_next_cell_runs_in(split_home: Path) -> None:
    assert Cell("kept = 1").result().state == "succeeded"
    old = until(core.get_split(), "home", lambda r: r["state"] == "warm", "a warm session")
    answer = sessions.restart(core.get_split(), "home")
    assert answer["stopped"] and answer["session"]["state"] == "warm" and answer["session"]["pid"] != old["pid"]
    assert "started a new session (warm)" in answer["message"]
    after = Cell("print('kept' in dir())")
    assert after.result().state == "succeeded" and after.text == "False\n"
    assert until(core.get_split(), "home", lambda r: r["state"] == "warm", "the new session")["pid"] == answer["session"]["pid"]
    fresh = sessions.restart(core.get_split(), "abroad")  # a site with no session: restart starts one
    assert not fresh["stopped"] and fresh["session"]["state"] == "warm"
    assert fresh["message"].startswith("site 'abroad' had no session running")


def test_a_session_this_process_is_starting_is_starting(split_home: Path) -> None:
    # The site's python takes two seconds to begin (a wrapper that sleeps, then runs this interpreter),
    # so the start is seen whatever the machine's speed.
    slow = split_home / "slow-python"
    slow.write_text(f"#!/bin/sh\nsleep 2\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    slow.chmod(0o755)
    write_config(split_home, SLURM_SITE.replace('[sites.home]\n', f'[sites.home]\npython = "{slow}"\n'))
    split = core.get_split()
    done: list[dict[str, Any]] = []
    restarting = threading.Thread(target=lambda: done.append(sessions.restart(split, "home")), daemon=True)
    restarting.start()
    until(split, "home", lambda r: r["state"] == "starting", "the session to be starting")
    restarting.join(120)
    assert done and done[0]["session"]["state"] == "warm"
    assert until(split, "home", lambda r: True, "the report")["state"] == "warm"


def test_a_session_another_client_starts_is_starting_for_all_and_not_started_twice(split_home: Path) -> None:
    """A notebook's first cell starts the site's session: every other client sees it `starting` (it is in
    the run index from its launch), and a second notebook's cell waits for it rather than start a second
    runner beside it (which the index would forget, left running)."""
    slow = split_home / "slow-python"  # two seconds to begin, so the start is seen whatever the machine's speed
    slow.write_text(f"#!/bin/sh\nsleep 2\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    slow.chmod(0o755)
    write_config(split_home, SLURM_SITE.replace('[sites.home]\n', f'[sites.home]\npython = "{slow}"\n'))
    first = Cell("import os\nprint(os.getpid())")
    until(core.Split(), "home", lambda r: r["state"] == "starting", "another client's session to be starting")
    second = Cell("import os\nprint(os.getpid())")
    assert first.result().state == second.result().state == "succeeded"
    assert first.text == second.text, "both cells ran in the one session"
    row = until(core.Split(), "home", lambda r: True, "the report")
    assert row["state"] == "warm" and str(row["pid"]) == first.text.strip()


def test_a_runner_that_ignores_sigterm_is_killed_and_its_run_still_cancelled(split_home: Path, monkeypatch) -> None:
    monkeypatch.setattr(sessions, "CANCEL_GRACE", 1.0)
    stubborn = Cell("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('deaf', flush=True)\n"
                    "time.sleep(300)")
    row = until(core.get_split(), "home", lambda r: r["state"] == "busy", "a busy session")
    waiting = Cell("print('never')")
    until(core.get_split(), "home", lambda r: r["queue"], "a queued cell")
    stopped = sessions.stop(core.get_split(), "home")
    assert [c["state"] for c in stopped["cancelled"]] == ["cancelled", "cancelled"]
    assert stubborn.result().state == waiting.result().state == "cancelled"
    assert "was stopped with its session" in (stubborn.outcome.reason or "")
    assert not sessions.sessions(core.get_split(), "home")["sites"][0]["pid"] == row["pid"]


def test_cancel_of_a_run_whose_runner_ignores_sigterm_is_cancelled_for_its_follower_too(split_home: Path,
                                                                                       monkeypatch) -> None:
    """`%split cancel RUN` SIGKILLs a runner deaf to SIGTERM; the notebook following the run must find it
    `cancelled` then, not record a death (`failed`) of its own before the cancel says so."""
    monkeypatch.setattr(sessions, "CANCEL_GRACE", 1.0)
    stubborn = Cell("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('deaf', flush=True)\n"
                    "time.sleep(300)")
    row = until(core.get_split(), "home", lambda r: r["state"] == "busy", "a busy session")
    assert core.get_split().cancel(row["running"]["run_id"]) == "cancelled"
    assert stubborn.result().state == "cancelled", stubborn.outcome.reason


def test_stop_names_only_the_runs_it_cancelled(split_home: Path) -> None:
    done = Cell("print('finished')")
    assert done.result().state == "succeeded"
    split = core.get_split()
    # as a kernel that died before it saw its run end leaves the index: the row still says running
    split.index.update(done.outcome.run_id, state="running")
    stopped = sessions.stop(split, "home")
    assert stopped["stopped"] and stopped["cancelled"] == []
    assert split.index.get(done.outcome.run_id).state == "succeeded"  # brought up to date from its log


def test_a_site_without_sessions_says_so_and_unknown_sites_list_the_known(split_home: Path) -> None:
    write_config(split_home, SLURM_SITE)
    split = core.get_split()
    row = sessions.sessions(split, "cluster")["sites"][0]
    assert row["supported"] is False and row["state"] == "gone"
    for act in (sessions.stop, sessions.restart):
        with pytest.raises(SessionError, match="site 'cluster' \\(slurm\\) runs each cell as a runner of its own"):
            act(split, "cluster")
    done = cli("nowhere", "--stop", "--yes")
    assert done.returncode == 2 and "unknown site 'nowhere'" in done.stderr and "abroad, cluster, home" in done.stderr
    shown = cli("cluster")
    assert shown.returncode == 0 and "none (one runner per cell)" in shown.stdout


def test_cli_prints_the_table_and_refuses_options_that_do_not_go_together(split_home: Path) -> None:
    assert Cell("kept = 1").result().state == "succeeded"
    done = cli()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["site", "state", "session", "pid", "uptime", "memory", "running", "queued"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["home"][1] == "warm" and rows["home"][-1] == "0" and rows["home"][7] == "MiB"
    assert rows["abroad"][1:3] == ["gone", "-"]
    as_json = json.loads(cli("home", "--json").stdout)
    assert as_json["states"] == list(sessions.SESSION_STATES) and as_json["sites"][0]["state"] == "warm"
    both = cli("home", "--stop", "--restart")
    assert both.returncode == 2 and "--stop and --restart do not go together" in both.stderr
    no_site = cli("--restart")
    assert no_site.returncode == 2 and "--restart needs the site" in no_site.stderr
    # not on a terminal (a script): the command itself is the decision
    quiet = cli("home", "--stop")
    assert quiet.returncode == 0 and "stopped the session on site 'home'" in quiet.stdout


def test_stop_asks_on_a_terminal_and_no_leaves_the_session(split_home: Path) -> None:
    assert Cell("kept = 1").result().state == "succeeded"
    pid = until(core.get_split(), "home", lambda r: r["state"] == "warm", "a warm session")["pid"]
    code, shown = on_a_terminal("n", "session", "home", "--stop")
    assert code == 1 and "stop the session on site 'home'?" in shown and "left as it was" in shown
    assert until(core.get_split(), "home", lambda r: True, "the report")["pid"] == pid
    code, shown = on_a_terminal("y", "session", "home", "--restart")
    assert code == 0 and "started a new session (warm)" in shown, shown
    assert until(core.get_split(), "home", lambda r: r["state"] == "warm", "the new session")["pid"] != pid


@pytest.mark.slow
def test_magic_session_shows_stops_and_the_next_cell_starts_a_new_one(kernel) -> None:
    kernel.ok("%%on home\nkept = 'here'")
    shown = text(kernel.ok("%split session home"))
    assert shown.splitlines()[0].split()[:2] == ["site", "state"] and shown.splitlines()[1].split()[:2] == ["home", "warm"]
    stopped = text(kernel.ok("%split session home --stop"))  # a notebook's magic line asks nothing
    assert stopped.splitlines()[0] == "stopped the session on site 'home'"
    assert stopped.splitlines()[2].split()[:3] == ["home", "gone", "-"]
    assert text(kernel.ok("%%on home\nprint('kept' in dir())")) == "False\n"
    restarted = text(kernel.ok("%split session home --restart --yes"))
    assert "started a new session (warm)" in restarted
    assert text(kernel.ok("%%on home\nprint('again')")) == "again\n"
    outputs, reply = kernel.run("%split session nowhere")
    assert reply["status"] == "error" and "unknown site 'nowhere'" in str(outputs)
