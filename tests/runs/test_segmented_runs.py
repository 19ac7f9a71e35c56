"""Runs whose event log rolls into many segments (`[runs] log_segment_bytes` set small), through
the real runner and every face that reads a log: live follow over the socket and by polling the
files while the runner rolls, the runner's replay to a client attaching mid-run, `logs` (whole,
from a middle seq, `--tail` across a segment boundary), `attach --tail`, paging, listing, a runner
killed mid-run (`record_death` reads the log's tail), cancel; on the local executor and over SSH."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_split import aio, cli
from jupyter_split.config import parse_config
from jupyter_split.core import CellOptions, Split, get_split
from jupyter_split.core.follow import follow
from jupyter_split.runs.events import ENDED_FILE, INDEX_FILE
from jupyter_split.runs.segments import index_entries, segment_name
from tests.fixtures.core import write_config

SEGMENT = 4096
LINES = 3000
#: prints one record a line (flush=True), with pauses, so followers catch up with the writer and
#: are mid-segment when it rolls
CELL = (f"import time\nfor i in range({LINES}):\n    print(f'step-{{i}}-end', flush=True)\n"
        "    if i % 100 == 0:\n        time.sleep(0.1)")
CONFIG = f"""[experiment]
name = "t"
home = "home"
default_remote = "home"

[sites.home]
jurisdiction = "CN"

[runs]
log_segment_bytes = {SEGMENT}
"""


def _steps(events: list[dict[str, Any]]) -> list[str]:
    return "".join(e["text"] for e in events if e["type"] == "stream").splitlines()


def _segment_starts(run_dir: Path) -> list[int]:
    """The first seq of each rolled segment, from the index."""
    return [seq for seq, _, offset in index_entries((run_dir / INDEX_FILE).read_bytes()) if offset == 0]


def _wait_for_segments(run_dir: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while not (run_dir / segment_name(count)).exists():
        assert time.monotonic() < deadline, f"the log never reached segment {count}"
        time.sleep(0.02)


def _followed_by_polling(split: Split, run_id: str) -> Any:
    """A follower of the log's files (as for Slurm and Ray, or a runner whose socket is gone),
    started now on the background loop: its future gives the records it delivered, in order."""
    record = split.index.get(run_id)
    got: list[dict[str, Any]] = []
    handle = {k: v for k, v in record.handle.items() if k != "sock"}
    future = aio.submit(follow(split.executor(record.site), handle, record.run_dir, 0, got.append))
    return future, got


def test_a_run_rolled_into_many_segments_reads_whole_through_every_face(split_home, capsys):
    write_config(split_home, CONFIG)
    split = get_split()
    run_id = split.execute(CELL, CellOptions(site="home", detach=True), {}, lambda event: None).run_id
    run_dir = Path(split.index.get(run_id).run_dir)
    polled, by_polling = _followed_by_polling(split, run_id)
    _wait_for_segments(run_dir, 5)
    attached: list[dict[str, Any]] = []  # over the socket: the runner replays five segments, then goes on live
    assert split.attach(run_id, attached.append, None).state == "succeeded"
    assert polled.result(120)["state"] == "succeeded"

    starts = _segment_starts(run_dir)
    assert len(starts) > 40, "a segment per ~4 KiB of log"
    assert all((run_dir / segment_name(k)).stat().st_size < SEGMENT + 200 for k in range(len(starts) + 1))
    steps = [f"step-{i}-end" for i in range(LINES)]
    for got in (attached, by_polling):
        assert [e["seq"] for e in got] == list(range(1, got[-1]["seq"] + 1)), "every record once, in order"
        assert _steps(got) == steps
    everything = attached

    assert cli.main(["logs", run_id]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert [line for line in shown if line.startswith("step-")] == steps and shown[-1] == "[succeeded]"
    for after in (starts[10] - 1, starts[10], starts[20] + 3):  # from a segment's first record, its second, its middle
        assert cli.main(["logs", run_id, "--after", str(after)]) == 0
        assert capsys.readouterr().out.splitlines() == _steps(everything[after:]) + ["[succeeded]"]
    # `--tail N` is the last N lines, as `tail -n` (the status one of them), whatever records hold them
    assert cli.main(["logs", run_id, "--tail", "150"]) == 0
    tail = capsys.readouterr().out.splitlines()
    assert tail == steps[-149:] + ["[succeeded]"]
    assert cli.main(["attach", run_id, "--tail", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == steps[-1:]  # the last step, then the status (not shown)

    pages, after = [], 0
    while page := split.run_events(run_id, after, limit=37):  # the sidebar's way: a page at a time from the last
        pages.append(page)
        after = page[-1]["seq"]
    assert [e for page in pages for e in page] == everything
    assert [e["seq"] for e in split.run_events(run_id, starts[30] - 2, limit=4)] == list(range(starts[30] - 1, starts[30] + 3))
    [row] = [r for r in split.list_runs() if r.run_id == run_id]
    assert (row.state, row.last_seq, row.last_line) == ("succeeded", everything[-1]["seq"], steps[-1])


def test_a_runner_killed_after_many_segments_is_recorded_once_after_its_last_record(split_home):
    write_config(split_home, CONFIG)
    split = get_split()
    cell = "import os, signal\nfor i in range(900):\n    print(f'step-{i}-end', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)"
    outcome = split.execute(cell, CellOptions(site="home", fresh=True), {}, lambda event: None)
    assert outcome.state == "failed"
    run_dir = Path(split.index.get(outcome.run_id).run_dir)
    assert len(_segment_starts(run_dir)) > 10
    ended = json.loads((run_dir / ENDED_FILE).read_text())
    logged = split.run_events(outcome.run_id)
    assert logged[-1] == ended and [e["seq"] for e in logged] == list(range(1, ended["seq"] + 1))
    assert _steps(logged) == [f"step-{i}-end" for i in range(900)]
    assert split.run_tail(outcome.run_id, 3)[-1] == ended

    run_id = split.execute(CELL, CellOptions(site="home", detach=True), {}, lambda event: None).run_id
    _wait_for_segments(Path(split.index.get(run_id).run_dir), 3)
    assert split.cancel(run_id) == "cancelled"
    last = split.run_tail(run_id, 2)
    assert last[-1]["state"] == "cancelled" and last[-2]["seq"] == last[-1]["seq"] - 1


@pytest.mark.slow
def test_over_ssh_replay_tail_and_a_polling_follower_cross_segments(sshd, split_home):
    raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
           "sites": {"sg": sshd.site(), "home": {"jurisdiction": "CN"}}, "runs": {"log_segment_bytes": SEGMENT}}
    split = Split(parse_config(raw, "test"))
    run_id = split.execute(CELL, CellOptions(site="sg", detach=True), {}, lambda event: None).run_id
    polled, by_polling = _followed_by_polling(split, run_id)
    assert polled.result(180)["state"] == "succeeded"
    run_dir = split.index.get(run_id).run_dir
    starts = _segment_starts(Path(run_dir))
    assert len(starts) > 40
    steps = [f"step-{i}-end" for i in range(LINES)]
    assert [e["seq"] for e in by_polling] == list(range(1, by_polling[-1]["seq"] + 1))
    assert _steps(by_polling) == steps
    assert split.run_events(run_id) == by_polling
    assert split.run_events(run_id, starts[25] - 1) == by_polling[starts[25] - 1:]
    assert split.run_tail(run_id, 150) == by_polling[-150:]
    aio.run(split.executor("sg").close())
