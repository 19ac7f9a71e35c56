"""The event log has one writer, the runner: a death the client records goes beside the log, and
a run whose runner wrote its final record is never reported as anything else (issue: a
million-line run that succeeded was listed as failed: the listing read the log, then found the
runner gone, and wrote a death after the runner's own `succeeded`)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from jupyter_split import aio
from jupyter_split.core import CellOptions, get_split
from jupyter_split.core.follow import record_death
from jupyter_split.core.replay import stream
from jupyter_split.runs.events import ENDED_FILE, EVENTS_FILE
from tests.fixtures.core import wait_runner_gone


def _detached(code: str) -> tuple[str, Path]:
    split = get_split()
    outcome = split.execute(code, CellOptions(site="home", detach=True), {}, lambda event: None)
    record = split.index.get(outcome.run_id)
    return outcome.run_id, Path(record.run_dir)


def test_a_death_recorded_after_the_runner_finished_is_the_runners_own_final(split_home):
    run_id, run_dir = _detached("print('step-1-end')")
    wait_runner_gone(get_split(), run_id)
    log = (run_dir / EVENTS_FILE).read_bytes()
    split = get_split()
    record = split.index.get(run_id)
    ex = split.executor(record.site)
    # the race, made certain: a caller that last saw the log before the final record, and then
    # found the runner gone, records a death
    final = aio.run(record_death(ex, record.handle, str(run_dir), last=1))
    assert final["state"] == "succeeded"
    assert (run_dir / EVENTS_FILE).read_bytes() == log and not (run_dir / ENDED_FILE).exists()
    assert [r.state for r in split.list_runs() if r.run_id == run_id] == ["succeeded"]


def test_a_killed_runner_is_failed_beside_the_log_and_the_log_is_the_runners_alone(split_home):
    run_id, run_dir = _detached("import os, signal\nprint('before', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)")
    wait_runner_gone(get_split(), run_id)
    split = get_split()
    assert [r.state for r in split.list_runs() if r.run_id == run_id] == ["failed"]
    written = [json.loads(line) for line in (run_dir / EVENTS_FILE).read_text().splitlines()]
    assert all(not event.get("final") for event in written), "the client wrote into the runner's log"
    ended = json.loads((run_dir / ENDED_FILE).read_text())
    assert ended["state"] == "failed" and "SIGKILL" in ended["reason"] and ended["seq"] > written[-1]["seq"]
    record = split.index.get(run_id)
    ex = split.executor(record.site)
    again = aio.run(record_death(ex, record.handle, str(run_dir), last=0))
    assert again == ended, "asked again, the same record"
    async def everything():
        return [event async for event in stream(ex, str(run_dir))]

    events = aio.run(everything())
    assert events[-1] == ended and [e["seq"] for e in events] == sorted({e["seq"] for e in events})
    assert split.run_events(run_id)[-1] == ended  # what the sidebar and `logs` read


def test_a_long_detached_run_polled_while_it_ends_is_listed_succeeded(split_home):
    run_id, run_dir = _detached("for i in range(20000):\n    print(f'step-{i}-end', flush=True)")
    split = get_split()
    deadline = time.monotonic() + 120
    while (state := next(r.state for r in split.list_runs() if r.run_id == run_id)) not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, state
    assert state == "succeeded"
    assert not (run_dir / ENDED_FILE).exists() and os.path.getsize(run_dir / EVENTS_FILE) > 0
