"""The event log has one writer on an SSH site too: a listing that polls a long run while its
runner finishes, or a death recorded just after the runner's own final record, never turns a
run that succeeded into a failed one (the local executor's tests: tests/core/test_one_writer.py)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jupyter_split import aio, core
from jupyter_split.core.follow import record_death
from jupyter_split.runs.events import ENDED_FILE, EVENTS_FILE
from tests.fixtures.core import wait_runner_gone
from tests.ssh.test_runs import split_for

pytestmark = pytest.mark.slow


def test_a_long_run_on_an_ssh_site_polled_while_it_ends_is_listed_succeeded(sshd, split_home):
    split = split_for(sshd)
    cell = "for i in range(20000):\n    print(f'step-{i}-end', flush=True)"
    outcome = split.execute(cell, core.CellOptions(site="sg", detach=True), {}, lambda event: None)
    run_dir = Path(split.index.get(outcome.run_id).run_dir)  # the test sshd's files are this machine's
    deadline, polls = time.monotonic() + 120, 0
    while (state := next(r.state for r in split.list_runs() if r.run_id == outcome.run_id)) not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, state
        polls += 1
    assert state == "succeeded" and polls > 1, (state, polls)
    assert not (run_dir / ENDED_FILE).exists()
    last = json.loads((run_dir / EVENTS_FILE).read_bytes().splitlines()[-1])
    assert last.get("final") and last["state"] == "succeeded"
    aio.run(split.executor("sg").close())


def test_a_death_recorded_over_ssh_after_the_runner_finished_is_the_runners_own_final(sshd, split_home):
    split = split_for(sshd)
    outcome = split.execute("print('step-1-end')", core.CellOptions(site="sg", detach=True), {}, lambda event: None)
    wait_runner_gone(split, outcome.run_id)
    record = split.index.get(outcome.run_id)
    run_dir = Path(record.run_dir)
    log = (run_dir / EVENTS_FILE).read_bytes()
    # the race, made certain: a caller that last saw the log before the final record, then
    # found the runner gone, records a death through the SSH executor
    final = aio.run(record_death(split.executor("sg"), record.handle, record.run_dir, last=1))
    assert final["state"] == "succeeded"
    assert (run_dir / EVENTS_FILE).read_bytes() == log and not (run_dir / ENDED_FILE).exists()
    assert [r.state for r in split.list_runs() if r.run_id == outcome.run_id] == ["succeeded"]
    aio.run(split.executor("sg").close())
