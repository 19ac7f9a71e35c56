"""The lease's ledger: a poll reads the run index's changes alone, and answers what a walk of every run
answers, on a real index of many runs as they start, end, change and are pruned; on a Slurm site, sacct
is asked of each ended job until its figures are final, of the going ones at every poll."""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_split import core
from jupyter_split.accelerators import ledger
from jupyter_split.accelerators.ledger import units
from jupyter_split.accelerators.usage import RUN_ROWS, leases, month_start, run_row, site_answer
from jupyter_split.runs.index import RunIndex, RunRecord
from tests.accelerators.test_lease import CONFIG as LEASED, HOUR, record
from tests.fixtures.core import write_config

CONFIG = LEASED.format(monthly="") + """
[sites.cluster]
jurisdiction = "SG"
executor = "slurm"
accelerator = "cuda"
lease = { gpu_hours = 900, monthly = true }
"""
#: now: the index's own writes stamp rows with this machine's clock, so the runs are in its past
NOW = time.time()
ENDED = ("succeeded", "failed", "cancelled", "timeout", "interrupted")


def site_lease(site: Any, records: list[RunRecord], now: float, accounted: dict[str, Any]) -> dict[str, Any]:
    """A site's lease beside what `records` used, each run walked: the answer the ledger must give."""
    since = month_start(now)
    runs = [run_row(r, site, now, since, accounted) for r in records]
    return site_answer(site, now, sum(units(r["hours"]) for r in runs), sum(units(r["month_hours"]) for r in runs),
                       runs, len(runs))


def walked(split: core.Split, now: float, accounted: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answer of a walk of every run of each site (how `leases` answered before its ledger)."""
    rows = [site_lease(c, split.index.list(c.name, limit=1_000_000), now, accounted or {})
            for c in split.config.sites.values()]
    costs: dict[str, float] = {}
    for row in rows:
        if row["cost"] is not None:
            costs[row["currency"]] = round(costs.get(row["currency"], 0.0) + row["cost"], 2)
    return {"sites": rows, "experiment": {"name": "t", "hours": round(sum(r["hours"] for r in rows), 2), "cost": costs}}


def many(index: RunIndex, count: int, rng: random.Random) -> None:
    """`count` runs over the last 60 days (across the month's start), on every site; a few still going."""
    for i in range(count):
        start = NOW - rng.uniform(31 * HOUR, 60 * 24 * HOUR)  # ended before now
        going = rng.random() < 0.02
        index.add(record(f"t-{i:05d}-{rng.getrandbits(24):06x}", ("home", "abroad", "cluster")[i % 3], start,
                         None if going else start + rng.uniform(60, 30 * HOUR),
                         rng.choice([None, 1, 2, 4, 8]), "running" if going else rng.choice(ENDED),
                         job=f"{1000 + i}" if i % 3 == 2 else None))


@pytest.fixture
def split(split_home: Path) -> core.Split:
    write_config(split_home, CONFIG)
    ledger.clear()
    split = core.get_split()
    split._executors["cluster"] = Sacct({})  # accounting that keeps no job, unless a test gives it some
    many(split.index, 3000, random.Random(19))
    return split


class Sacct:
    """A Slurm executor's `command` answering sacct from `jobs` (job -> (seconds, gpus, state)); it
    records the jobs each call asked for."""

    def __init__(self, jobs: dict[str, tuple[int, int, str]]):
        self.jobs, self.asked = jobs, []

    async def command(self, argv: list[str]) -> tuple[int, str, str]:
        asked = argv[-1].split(",")
        self.asked.append(asked)
        lines = [f"{j}|{s}|billing=1,gres/gpu={g}|{state}" for j, (s, g, state) in self.jobs.items() if j in asked]
        return 0, "\n".join(lines) + "\n", ""


def test_a_poll_answers_what_a_walk_of_every_run_answers_as_the_index_changes(split: core.Split) -> None:
    index, rng = split.index, random.Random(7)
    assert leases(split, now=NOW) == walked(split, NOW)
    now = NOW
    for step in range(6):
        now += 600
        going = index.list(state="running", limit=1000)
        for run in going[:5]:  # some end; one goes on printing
            index.update(run.run_id, state=rng.choice(ENDED))
        index.update(going[5].run_id, last_line=f"step {step}")
        newest = index.list("abroad", limit=3)
        index.update(newest[step % 3].run_id, delivered=True)  # an ended run's row changes: its end moves
        many(index, 20, rng)  # new runs, some of them already ended
        assert leases(split, now=now) == walked(split, now), step
        assert leases(split, now=now) == walked(split, now)  # nothing changed: the same again
    index.prune(NOW - 20 * 24 * HOUR)  # rows go: the ledger reads the whole index again
    assert leases(split, now=now) == walked(split, now)
    for run in index.list("abroad", limit=10):  # the newest rows go: older ones take their places
        index._db().execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
    answer = leases(split, now=now)
    assert answer == walked(split, now) and len(answer["sites"][1]["runs"]) == RUN_ROWS


def test_a_new_month_counts_from_its_start(split: core.Split) -> None:
    leases(split, now=NOW)
    later = month_start(NOW) + 40 * 24 * HOUR  # the next month
    assert leases(split, now=later) == walked(split, later)


def test_the_rows_are_read_again_only_when_the_index_changed(split: core.Split, monkeypatch) -> None:
    leases(split, now=NOW)
    read: list[int] = []
    changes = RunIndex.changes

    def counted(self, *args):
        answer = changes(self, *args)
        read.append(len(answer[4]))
        return answer

    monkeypatch.setattr(RunIndex, "changes", counted)
    leases(split, now=NOW + 60)
    assert read == []  # nothing changed: no row is read again
    going = split.index.list(state="running", limit=1)[0]
    split.index.update(going.run_id, last_line="printed")
    read.clear()
    leases(split, "abroad" if going.site == "abroad" else going.site, now=NOW + 60)
    assert read == [1]  # the row that changed


def test_sacct_is_asked_of_each_ended_job_until_its_figures_are_final(split: core.Split) -> None:
    cluster = [r for r in split.index.list("cluster", limit=10_000)]
    ended = [r for r in cluster if r.state in ENDED]
    going = [r for r in cluster if r.state == "running"]
    jobs = {r.handle["job_id"]: (3600 + i, 2, "COMPLETED") for i, r in enumerate(ended[:100])}
    jobs[ended[100].handle["job_id"]] = (50, 1, "COMPLETING")  # its figures still change
    jobs.update({r.handle["job_id"]: (7200, 4, "RUNNING") for r in going})
    fake = split._executors["cluster"] = Sacct(jobs)
    accounted = {j: figures for j, figures in _figures(jobs).items()}
    assert leases(split, now=NOW) == walked(split, NOW, accounted)
    assert len(fake.asked[0]) == len(cluster)  # the first poll asks of every job
    assert leases(split, "cluster", now=NOW + 60)["sites"] == walked(split, NOW + 60, accounted)["sites"][2:]
    # then of the going runs' jobs and the one still completing; the others' runs ended long ago (or
    # sacct gave their final figures): the index's figures stand
    assert sorted(fake.asked[1]) == sorted([r.handle["job_id"] for r in going] + [ended[100].handle["job_id"]])


def _figures(jobs: dict[str, tuple[int, int, str]]) -> dict[str, Any]:
    from jupyter_split.accelerators.usage import SLURM_GOING, Accounted

    return {j: Accounted(float(s), g, state not in SLURM_GOING) for j, (s, g, state) in jobs.items()}


def test_the_index_answers_its_changes_since_a_row_and_a_time(tmp_path: Path) -> None:
    index = RunIndex(tmp_path / "index.sqlite")
    for i in range(5):
        index.add(record(f"r-{i}", "abroad" if i % 2 else "home", NOW - 3 * HOUR, NOW - 2 * HOUR, 1))
    version, last, total, kept, rows = index.changes("abroad", 0, float("inf"))
    assert (total, kept, sorted(r.run_id for r in rows)) == (5, 0, ["r-1", "r-3"])  # every row after row 0
    assert index.changes("abroad", last, float("inf"))[1:] == (last, 5, 5, [])  # nothing since
    index.update("r-1", state="failed")  # stamped now
    again = index.changes("abroad", last, time.time() - 60)
    assert again[0] > version and [r.run_id for r in again[4]] == ["r-1"]
    index.add(record("r-9", "abroad", NOW - HOUR, NOW - 2 * HOUR, 1))  # a row added whole keeps its own times
    assert [r.run_id for r in index.changes("abroad", last, time.time())[4]] == ["r-9"]
    index.prune(NOW)
    assert index.changes("abroad", last, time.time())[2:4] == (1, 1)  # four of the five rows up to `last` went
