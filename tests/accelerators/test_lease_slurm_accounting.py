"""The lease on a Slurm site with accounting: a real job through the Slurm executor, kept by a real
slurmdbd (MariaDB behind it), counted from what `sacct` says of it: its ElapsedRaw and the GPUs in
its AllocTRES, beside what sacct prints when asked by hand (job steps and all)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from jupyter_split import aio
from jupyter_split.accelerators import ledger
from jupyter_split.accelerators.usage import SACCT, Accounted, leases, sacct
from jupyter_split.core.outcome import CellOptions
from jupyter_split.core.split import Split
from tests.executors.test_slurm import slurm_config
from tests.fixtures.core import write_config

pytestmark = pytest.mark.slow

#: the GPUs each run asks for through the site's sbatch options (the handle records one card)
GPUS = 2
PRICE = 3.0


@pytest.fixture
def split(slurm_accounting, split_home, monkeypatch) -> Split:
    for key, value in slurm_accounting.env.items():
        monkeypatch.setenv(key, value)
    write_config(split_home, slurm_config(split_home, f"""\
slurm = {{ extra = ["--gres=gpu:{GPUS}"] }}
lease = {{ gpu_hours = 100, price_per_gpu_hour = {PRICE}, currency = "USD" }}
""", accelerator="cuda"))
    ledger.clear()
    return Split()


def by_hand(cluster, job: str) -> list[list[str]]:
    """sacct's own answer of `job`, as a person would ask: every line (the job and its steps), split."""
    out = cluster.run("sacct", "-j", job, "--parsable2", "--noheader", "-o", "JobID,ElapsedRaw,AllocTRES,State").stdout
    return [line.split("|") for line in out.splitlines()]


def accounted(cluster, job: str, final: bool = True, timeout: float = 60) -> list[list[str]]:
    """sacct's lines of `job` once its own line says it ended (`final`) or runs, with its GPUs allocated:
    slurmdbd learns of a job late, and of a running job's allocated TRES later than of its state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = by_hand(cluster, job)
        cells = next((cells for cells in lines if cells[0] == job), ["", "", "", ""])
        if cells[3] and (cells[3].split()[0] not in ("PENDING", "RUNNING")) == final and "gres/gpu=" in cells[2]:
            return lines
        time.sleep(0.5)
    raise AssertionError(f"sacct never showed job {job} {'ended' if final else 'running'}: {by_hand(cluster, job)}")


def test_the_lease_counts_a_slurm_jobs_hours_and_gpus_from_sacct(split: Split, slurm_accounting) -> None:
    outcome = split.execute("import time\ntime.sleep(3)\nprint('done')", CellOptions(), {}, lambda e: None)
    assert outcome.state == "succeeded", outcome
    record = split.index.get(outcome.run_id)
    job = record.handle["job_id"]
    assert record.handle["cards"] == 1  # the cell asked for no --gpus: the index alone would count one card

    lines = accounted(slurm_accounting, job)
    [main] = [cells for cells in lines if cells[0] == job]
    assert any(cells[0] == f"{job}.batch" for cells in lines), lines  # real sacct lists the job's steps too
    elapsed = int(main[1])
    assert elapsed >= 3 and f"gres/gpu={GPUS}" in main[2].split(",") and main[3] == "COMPLETED", main

    # The command the lease runs: the job's own line alone, in the same columns.
    own = slurm_accounting.run(*SACCT, job).stdout.splitlines()
    assert own == ["|".join(main)], (own, lines)
    site = split.config.site("cluster")
    assert aio.run(sacct(split.executor(site), [job])) == {job: Accounted(float(elapsed), GPUS, True)}

    hours = round(elapsed / 3600 * GPUS, 4)
    answer = leases(split, "cluster")
    [cluster] = answer["sites"]
    [row] = cluster["runs"]
    assert (row["run_id"], row["source"], row["cards"], row["hours"]) == (outcome.run_id, "sacct", GPUS, hours)
    assert row["cost"] == round(hours * PRICE, 2)
    assert cluster["runs_counted"] == 1 and cluster["hours"] == round(hours, 2)
    assert cluster["left"] == round(100 - hours, 2) and cluster["currency"] == "USD"

    # The CLI, in a process of its own, asks sacct the same and answers the same.
    done = subprocess.run([sys.executable, "-m", "jupyter_split.cli", "lease", "cluster", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [shown] = json.loads(done.stdout)["sites"]
    assert [(r["source"], r["cards"], r["hours"]) for r in shown["runs"]] == [("sacct", GPUS, hours)]


def test_sacct_tells_a_running_job_from_an_ended_one_in_real_output(split: Split, slurm_accounting) -> None:
    # Jobs of the site's cluster that are no run of the split: sacct's states as they are written,
    # "CANCELLED by UID" included, and several jobs in one call.
    def submit(gpus: int, command: str) -> str:
        return slurm_accounting.run("sbatch", "--parsable", f"--gres=gpu:{gpus}", "--output=/dev/null",
                                    "--wrap", command).stdout.strip().split(";")[0]

    going, quick = submit(1, "sleep 600"), submit(1, "true")  # the node has two GPUs
    try:
        accounted(slurm_accounting, going, final=False)
        accounted(slurm_accounting, quick)
        ex = split.executor(split.config.site("cluster"))
        found = aio.run(sacct(ex, [going, quick, "999999"]))  # a job accounting never had: absent
        assert set(found) == {going, quick}
        assert found[going].gpus == 1 and not found[going].final
        assert found[quick] == Accounted(found[quick].seconds, 1, True)
    finally:
        slurm_accounting.run("scancel", going, check=False)
    [cells] = [c for c in accounted(slurm_accounting, going) if c[0] == going]
    assert cells[3].startswith("CANCELLED by "), cells
    cancelled = aio.run(sacct(ex, [going]))[going]
    assert cancelled.final and cancelled.seconds == float(cells[1]) and cancelled.gpus == 1
