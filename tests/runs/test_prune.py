"""`jupyter-split runs --prune-before DATE`: the rows of runs that ended before DATE leave the run index."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from jupyter_split import core
from jupyter_split.core import CellOptions, get_split
from jupyter_split.protocol import TERMINAL_STATES
from jupyter_split.runs.index import RunIndex, RunRecord

DATE = datetime(2026, 6, 1).timestamp()  # local midnight, as the CLI reads "2026-06-01"
HOUR = 3600.0


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_split.cli", *argv], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def _index(split_home: Path) -> RunIndex:
    """Runs that ended before the date and after it, and active ones from long before; each with its
    run directory."""
    index = RunIndex(split_home / "data" / "index.sqlite")
    rows = {
        "old-succeeded": ("home", "succeeded", DATE - 30 * 24 * HOUR),
        "old-failed": ("home", "failed", DATE - HOUR),
        "old-cancelled-sg": ("sg", "cancelled", DATE - 2 * HOUR),
        "new-succeeded": ("home", "succeeded", DATE + HOUR),
        "old-running": ("home", "running", DATE - 40 * 24 * HOUR),
        "old-submitted-sg": ("sg", "submitted", DATE - 40 * 24 * HOUR),
        "old-preempted": ("home", "preempted", DATE - 40 * 24 * HOUR),
    }
    for run_id, (site, state, updated) in rows.items():
        run_dir = split_home / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "events.jsonl").write_text("{}\n")
        index.add(RunRecord(run_id=run_id, site=site, run_dir=str(run_dir), mode="detached", state=state,
                            created=updated - HOUR, updated=updated))
    return index


def _left(index: RunIndex) -> set[str]:
    return {r.run_id for r in index.list(limit=100)}


def test_prune_removes_only_the_runs_that_ended_before_the_date_and_keeps_their_directories(split_home):
    index = _index(split_home)
    done = _cli("runs", "--prune-before", "2026-06-01")
    assert done.returncode == 0, done.stderr
    assert "removed 3 runs that ended before 2026-06-01 00:00:00" in done.stdout
    assert "run directories on the sites are kept" in done.stdout
    assert _left(index) == {"new-succeeded", "old-running", "old-submitted-sg", "old-preempted"}
    assert sorted(p.name for p in (split_home / "runs").iterdir()) == sorted(
        ["old-succeeded", "old-failed", "old-cancelled-sg", "new-succeeded", "old-running", "old-submitted-sg", "old-preempted"])
    assert all((p / "events.jsonl").exists() for p in (split_home / "runs").iterdir())
    again = _cli("runs", "--prune-before", "2026-06-01")
    assert "removed 0 runs" in again.stdout


def test_prune_keeps_to_one_site_and_takes_a_time_of_day(split_home):
    index = _index(split_home)
    done = _cli("runs", "--site", "home", "--prune-before", "2026-05-31T22:30")
    assert done.returncode == 0, done.stderr
    assert "removed 1 run on home that ended before 2026-05-31 22:30:00" in done.stdout
    assert _left(index) == {"old-failed", "old-cancelled-sg", "new-succeeded", "old-running", "old-submitted-sg", "old-preempted"}
    assert _cli("runs", "--prune-before", "2026-06-01 00:30:00").returncode == 0
    assert _left(index) == {"new-succeeded", "old-running", "old-submitted-sg", "old-preempted"}


def test_a_date_prune_cannot_read_is_a_usage_error_naming_the_option_and_the_format(split_home):
    index = _index(split_home)
    for text in ("2026-13-01", "last week", "01/06/2026"):
        done = _cli("runs", "--prune-before", text)
        assert done.returncode == 2
        assert "--prune-before" in done.stderr and "YYYY-MM-DD" in done.stderr and repr(text) in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert len(_left(index)) == 7


# -- --delete-run-dirs: the runs' directories go too, and only theirs --------------------------------

TOMORROW = datetime.fromtimestamp(time.time() + 24 * HOUR).strftime("%Y-%m-%d")


def _finished(split, site: str, code: str = "print('done')") -> tuple[str, Path]:
    outcome = split.execute(code, CellOptions(site=site, detach=True), {}, lambda event: None)
    deadline = time.monotonic() + 60
    while next(r.state for r in split.list_runs() if r.run_id == outcome.run_id) not in TERMINAL_STATES:
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.1)
    return outcome.run_id, Path(split.index.get(outcome.run_id).run_dir)


def test_delete_run_dirs_removes_each_runs_own_folder_and_nothing_else(split_home):
    split = get_split()
    ran = [_finished(split, "home") for _ in range(2)]
    precious = split_home / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("not a run")
    # a row edited by hand (or from another config) that points outside the site's runs folder
    split.index.add(RunRecord(run_id="forged-run", site="home", run_dir=str(precious), mode="detached",
                              state="succeeded"))
    done = _cli("runs", "--prune-before", TOMORROW, "--delete-run-dirs")
    assert done.returncode == 1, done.stderr
    assert "removed 2 runs that ended before" in done.stdout and "deleted their run directories" in done.stdout
    assert "kept forged-run: its run directory could not be deleted" in done.stdout and "only a run's own folder" in done.stdout
    assert all(not run_dir.exists() for _, run_dir in ran)
    assert (precious / "keep.txt").read_text() == "not a run"
    assert _left(split.index) == {"forged-run"}


def test_delete_run_dirs_on_an_ssh_site_removes_the_folder_there(sshd, split_home):
    from tests.ssh.test_runs import ssh_config
    from tests.fixtures.core import write_config

    write_config(split_home, ssh_config(sshd))
    core.reset()
    split = get_split()
    run_id, run_dir = _finished(split, "sg")
    assert run_dir.exists()  # the test sshd's files are this machine's
    done = _cli("runs", "--site", "sg", "--prune-before", TOMORROW, "--delete-run-dirs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed 1 run on sg" in done.stdout
    assert not run_dir.exists() and run_id not in _left(split.index)


def test_delete_run_dirs_without_a_date_is_a_usage_error(split_home):
    index = _index(split_home)
    done = _cli("runs", "--delete-run-dirs")
    assert done.returncode == 2 and "--prune-before" in done.stderr and "Traceback" not in done.stderr
    assert len(_left(index)) == 7
