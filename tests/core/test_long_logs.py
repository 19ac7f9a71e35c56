"""Runs that print for weeks: their logs are read from any `seq` or from the end, a chunk at a
time, on the local and SSH executors, never whole (issue: replaying a million-line run took
1.1 GB, and a listing read every active run's whole log)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_split import aio, cli
from jupyter_split.core import CellOptions, get_split, replay
from jupyter_split.runs import events as log_module
from jupyter_split.runs.events import EVENTS_FILE, INDEX_FILE, EventLog, iter_events, read_index, tail_events

#: a week of a line a second is 600,000 lines: the issue asks for a million, through every face
LINES = 1_000_000


def _written(run_dir: Path, count: int, every: int = 1 << 12) -> None:
    log = EventLog(run_dir)
    for i in range(count):
        log.append("stream", name="stdout", text=f"step-{i}-end\n" + ("x" * 3000 + "\n" if i == 77 else ""))
    log.append("status", state="succeeded", final=True)
    log.close()


@pytest.fixture
def small_pieces(monkeypatch):
    """Index entries and chunks small enough that a short log crosses many of both."""
    monkeypatch.setattr(log_module, "INDEX_EVERY", 1 << 12)
    monkeypatch.setattr(log_module, "CHUNK", 1 << 12)
    monkeypatch.setattr(replay, "CHUNK", 1 << 12)
    monkeypatch.setattr(replay, "TAIL_SPAN", 1 << 8)


def test_the_index_points_at_record_starts_and_readers_start_near_any_seq(tmp_path, small_pieces):
    _written(tmp_path, 20_000)
    data = (tmp_path / EVENTS_FILE).read_bytes()
    entries = read_index((tmp_path / INDEX_FILE).read_bytes())
    assert len(entries) > 50
    for seq, at in entries:
        assert json.loads(data[at:data.index(b"\n", at)])["seq"] == seq
    assert [e["seq"] for e in iter_events(tmp_path)] == list(range(1, 20_002))
    assert [e["seq"] for e in iter_events(tmp_path, 15_000)] == list(range(15_001, 20_002))
    assert [e["seq"] for e in tail_events(tmp_path / EVENTS_FILE, 3)] == [19_999, 20_000, 20_001]
    # a requeued job appends to the same log: numbering and the index go on
    log = EventLog(tmp_path)
    log.append("stream", name="stdout", text="again\n")
    log.close()
    assert [e["seq"] for e in iter_events(tmp_path, 20_000)] == [20_001, 20_002]
    with open(tmp_path / EVENTS_FILE, "ab") as handle:  # a record still being written is not read
        handle.write(b'{"seq":20003,"t":1')
    assert [e["seq"] for e in iter_events(tmp_path, 20_001)] == [20_002]


@pytest.mark.slow
def test_a_long_run_replays_whole_and_tails_from_its_end_through_every_face(split_home, capsys):
    split = get_split()
    cell = f"for i in range({LINES}):\n    print(f'step-{{i}}-end', flush=True)"
    outcome = split.execute(cell, CellOptions(site="home", detach=True), {}, lambda event: None)
    run_id = outcome.run_id
    deadline = time.monotonic() + 600
    while (state := next(r.state for r in split.list_runs() if r.run_id == run_id)) not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state == "succeeded"
    run_dir = Path(split.index.get(run_id).run_dir)
    assert read_index((run_dir / INDEX_FILE).read_bytes()), "a log over a MiB is indexed"

    # `logs` in its own process: its peak memory is that of a short run's, not the log's
    short = split.execute("print('short')", CellOptions(site="home"), {}, lambda event: None).run_id
    assert _peak_rss_kib("logs", run_id) <= 1.5 * _peak_rss_kib("logs", short)

    assert cli.main(["logs", run_id]) == 0
    shown = capsys.readouterr().out.splitlines()
    steps = [line for line in shown if line.startswith("step-")]
    assert steps == [f"step-{i}-end" for i in range(LINES)], "every line once, in order"
    assert shown[-1] == "[succeeded]"

    assert cli.main(["logs", run_id, "--tail", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"step-{LINES - 2}-end", f"step-{LINES - 1}-end", "[succeeded]"]

    assert cli.main(["attach", run_id, "--tail", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"step-{LINES - 1}-end"]

    last = split.run_tail(run_id, 1)[0]
    page = split.run_events(run_id, last["seq"] - 5, limit=3)
    assert [e["seq"] for e in page] == [last["seq"] - 4, last["seq"] - 3, last["seq"] - 2]


def _peak_rss_kib(*argv: str) -> int:
    """The peak RSS of `jupyter-split ARGV` in a process of its own, its output thrown away."""
    probe = ("import resource, sys\nfrom jupyter_split import cli\nsys.stdout = open(os.devnull, 'w')\n"
             "status = cli.main(sys.argv[1:])\nsys.stderr.write(f'{status} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}')")
    done = subprocess.run([sys.executable, "-c", "import os\n" + probe, *argv], capture_output=True, text=True,
                          timeout=600)
    status, peak = done.stderr.split()[-2:]
    assert status == "0", done.stderr
    return int(peak)


@pytest.mark.slow
def test_a_million_line_run_on_an_ssh_site_replays_and_tails_over_ssh(sshd, split_home):
    """A real runner on the SSH site prints a million lines, detached, while the listing polls it (its
    end is the runner's, never a death recorded over it); then every line once and in order through
    SFTP a chunk at a time, and its tail read back from the end."""
    from tests.ssh.test_runs import split_for

    split = split_for(sshd)
    cell = f"for i in range({LINES}):\n    print(f'step-{{i}}-end', flush=True)"
    run_id = split.execute(cell, CellOptions(site="sg", detach=True), {}, lambda event: None).run_id
    deadline = time.monotonic() + 600
    while (state := next(r.state for r in split.list_runs() if r.run_id == run_id)) not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state == "succeeded"
    last = split.run_tail_lines(run_id, 3)  # read back over SFTP, whatever records hold the lines
    assert "".join(e["text"] for e in last[:-1]) == f"step-{LINES - 2}-end\nstep-{LINES - 1}-end\n"
    assert last[-1]["state"] == "succeeded"
    seen, pending = 0, ""
    for chunk in split.iter_run_events(run_id):
        for event in chunk:
            if event["type"] == "stream":
                # a record holds what one flush of the runner's capture took: lines, or a part of one
                *lines, pending = (pending + event["text"]).split("\n")
                for line in lines:
                    assert line == f"step-{seen}-end", (seen, line[:40])
                    seen += 1
    assert seen == LINES and pending == "" and event["state"] == "succeeded"
    aio.run(split.executor("sg").close())


def test_tail_and_replay_over_ssh_read_from_near_the_end(sshd, split_home, small_pieces):
    from tests.ssh.test_runs import split_for

    split = split_for(sshd)
    cell = "import sys\nfor i in range(3000):\n    print(f'line {i}', flush=True)"
    outcome = split.execute(cell, CellOptions(site="sg", fresh=True), {}, lambda event: None)
    assert outcome.state == "succeeded", outcome
    tail = split.run_tail_lines(outcome.run_id, 2)
    assert tail[-1]["state"] == "succeeded" and "".join(e["text"] for e in tail[:-1]) == "line 2999\n"
    ex = split.executor("sg")
    run_dir = split.index.get(outcome.run_id).run_dir

    async def from_seq(after: int) -> list[dict]:
        return [event async for event in replay.stream(ex, run_dir, after)]

    everything = aio.run(from_seq(0))
    lines = "".join(e["text"] for e in everything if e["type"] == "stream").splitlines()
    assert lines == [f"line {i}" for i in range(3000)]
    late = aio.run(from_seq(everything[-10]["seq"]))
    assert late == everything[-9:]
    aio.run(ex.close())
