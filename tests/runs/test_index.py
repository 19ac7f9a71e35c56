"""The run index: looking a run up by a part of its id."""
from __future__ import annotations

import pytest

from jupyter_split.runs.index import RunIndex, RunRecord, UnknownRun


def test_a_part_of_a_run_id_finds_it_and_wildcards_are_plain_characters(tmp_path):
    index = RunIndex(tmp_path / "index.sqlite")
    for run_id in ("exp_a-home-1-aaaa", "expXa-home-2-bbbb", "exp%b-sg-3-cccc"):
        index.add(RunRecord(run_id=run_id, site="home", run_dir=f"/runs/{run_id}", mode="detached"))
    assert index.get("aaaa").run_id == "exp_a-home-1-aaaa"
    assert index.get("exp_a").run_id == "exp_a-home-1-aaaa"  # `_` is not "any character": expXa does not match
    assert index.get("exp%b").run_id == "exp%b-sg-3-cccc"
    with pytest.raises(UnknownRun, match="matches 2 runs"):
        index.get("-home-")
    with pytest.raises(UnknownRun, match="no run 'EXP_A'"):
        index.get("EXP_A")
