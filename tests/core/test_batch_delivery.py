"""A chunk of a log delivered at once (`many`) shows and records exactly what the same records
delivered one by one do: the same text in the same order on each stream, the same view of the run."""
from __future__ import annotations

import io

from jupyter_split.commands.render import TerminalOutput
from jupyter_split.core.follow import Tracker
from jupyter_split.runs.index import RunIndex, RunRecord

BATCH = [
    {"seq": 1, "type": "stream", "name": "stdout", "text": "step 1\n"},
    {"seq": 2, "type": "stream", "name": "stdout", "text": "step 2\n"},
    {"seq": 3, "type": "stream", "name": "stderr", "text": "warning: slow\n"},
    {"seq": 4, "type": "stream", "name": "stdout", "text": "step 3\n"},
    {"seq": 5, "type": "display", "data": {"text/plain": "<Figure>"}},
    {"seq": 6, "type": "stream", "name": "stdout", "text": "step 4\n"},
    {"seq": 7, "type": "stream", "name": "stdout", "text": "  \n"},
    {"seq": 8, "type": "status", "state": "succeeded", "final": True},
]


def _shown(deliver_all: bool) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    show = TerminalOutput(out, err, status=True)
    if deliver_all:
        show.many(BATCH)
    else:
        for event in BATCH:
            show(event)
    return out.getvalue(), err.getvalue()


def test_a_batch_shows_what_its_records_show_one_by_one():
    assert _shown(True) == _shown(False)
    out, err = _shown(True)
    assert out == "step 1\nstep 2\nstep 3\n<Figure>\nstep 4\n  \n" and err == "warning: slow\n[succeeded]\n"


def test_a_batch_in_one_stream_keeps_the_order_of_stdout_and_stderr():
    both = io.StringIO()
    show = TerminalOutput(both, both, status=True)
    show.many(BATCH)
    assert both.getvalue() == "step 1\nstep 2\nwarning: slow\nstep 3\n<Figure>\nstep 4\n  \n[succeeded]\n"


def test_a_batch_folds_into_the_view_its_records_fold_into(tmp_path):
    def tracked(batches: list[list[dict]]) -> Tracker:
        index = RunIndex(tmp_path / f"index-{len(batches)}.sqlite")
        record = RunRecord(run_id="r", site="home", run_dir=str(tmp_path), mode="detached", state="running")
        index.add(record)
        tracker = Tracker(index, record, lambda event: None)
        for batch in batches:
            tracker.many(batch)
        return tracker

    one, many = tracked([[event] for event in BATCH]), tracked([BATCH])
    assert (many.view.seq, many.view.state, many.view.last_line) == (one.view.seq, one.view.state, one.view.last_line) \
        == (8, "succeeded", "step 4")
    tail = tracked([BATCH[:3]]).view
    assert (tail.seq, tail.state, tail.last_line) == (3, "running", "warning: slow")
