"""Cells on a real single-node Slurm (munged, slurmctld, slurmd on 127.0.0.1): one batch job a run."""
from __future__ import annotations

import hashlib
import json
import re
import sys
import time

import pytest

from jupyter_split.core.outcome import CellOptions

from jupyter_split.core.split import Split
from jupyter_split.executors import ExecutorError
from jupyter_split.runs.events import read_events
from tests.fixtures.core import write_config
from tests.fixtures.long_logs import RUNS_SECTION, check_a_segmented_run

pytestmark = pytest.mark.slow


def slurm_config(root, extra: str = "", accelerator: str = "cpu") -> str:
    return f"""
[experiment]
name = "slurmtest"
home = "home"
default_remote = "cluster"

[sites.home]
executor = "local"
jurisdiction = "CN"
accelerator = "cpu"

[sites.cluster]
executor = "slurm"
jurisdiction = "SG"
accelerator = "{accelerator}"
python = "{sys.executable}"
workdir = "{root}/cluster"
{extra}
"""


@pytest.fixture
def split(slurm, split_home, monkeypatch) -> Split:
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    write_config(split_home, slurm_config(split_home))
    return Split()


def job_of(split: Split, run_id: str) -> str:
    return split.index.get(run_id).handle["job_id"]


def job_field(slurm, job: str, field: str) -> str:
    return slurm.run("scontrol", "show", "job", "-o", job).stdout.split(f"{field}=")[1].split()[0]


def job_ends(slurm, job: str, timeout: float = 30) -> str:
    """The job's state once the runner's process has gone (the log's final record comes first)."""
    deadline = time.monotonic() + timeout
    while (state := job_field(slurm, job, "JobState")) in ("RUNNING", "COMPLETING") and time.monotonic() < deadline:
        time.sleep(0.1)
    return state


def wait_for_event(split: Split, run_id: str, predicate, timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = split.run_events(run_id)
        if any(predicate(e) for e in events):
            return events
        time.sleep(0.1)
    raise AssertionError(f"run {run_id}: no such event after {timeout} s; events: {split.run_events(run_id)}")


def printed(events: list[dict]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "stream")


def test_cell_runs_as_a_batch_job_with_output_and_out_variables(split, slurm):
    events: list[dict] = []
    namespace = {"base": 40}
    outcome = split.execute(
        "import os\nprint('job', os.environ['SLURM_JOB_ID'], 'on', os.environ['SLURM_JOB_PARTITION'])\n"
        "answer = base + 2\nanswer",
        CellOptions(inputs=["base"], outputs=["answer"], name="first cell"), namespace, events.append)
    assert outcome.state == "succeeded", outcome
    job = job_of(split, outcome.run_id)
    assert f"job {job} on {slurm.partition}\n" == printed(events)
    assert [e["data"]["text/plain"] for e in events if e["type"] == "result"] == ["42"]
    assert namespace["answer"] == 42
    assert job_ends(slurm, job) == "COMPLETED"
    assert job_field(slurm, job, "JobName") == "first_cell"


def test_a_failing_cell_is_an_error_with_its_traceback(split):
    events: list[dict] = []
    outcome = split.execute("def f():\n    raise KeyError('missing')\nf()", CellOptions(), {}, events.append)
    assert outcome.state == "failed"
    assert outcome.error and outcome.error["ename"] == "KeyError"
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(outcome.error["traceback"]))
    assert "raise KeyError('missing')" in traceback


def test_cancel_ends_the_job_and_the_run(split, slurm):
    outcome = split.execute("import time\nprint('started', flush=True)\ntime.sleep(600)",
                            CellOptions(detach=True), {}, lambda e: None)
    wait_for_event(split, outcome.run_id, lambda e: e["type"] == "stream" and "started" in e["text"])
    assert split.cancel(outcome.run_id) == "cancelled"
    job = job_of(split, outcome.run_id)
    assert job_ends(slurm, job) == "CANCELLED"
    final = read_events(split.index.get(outcome.run_id).run_dir)[-1]
    assert final["state"] == "cancelled" and final["final"]


def test_interrupt_raises_keyboard_interrupt_in_the_cell(split, slurm):
    outcome = split.execute("import time\nprint('started', flush=True)\nfor _ in range(6000):\n    time.sleep(0.1)",
                            CellOptions(detach=True), {}, lambda e: None)
    wait_for_event(split, outcome.run_id, lambda e: e["type"] == "stream" and "started" in e["text"])
    split.interrupt(outcome.run_id)
    events: list[dict] = []
    attached = split.attach(outcome.run_id, events.append, {})
    assert attached.state == "interrupted", attached
    assert any(e["type"] == "error" and e["ename"] == "KeyboardInterrupt" for e in events)


def test_preemption_calls_the_hook_requeues_and_the_log_goes_on(split, slurm):
    cell = (
        "import os, pathlib, time\n"
        "ckpt = pathlib.Path('ckpt.txt')\n"
        "print('attempt', os.environ.get('SLURM_RESTART_COUNT', '0'), 'resumes from',"
        " ckpt.read_text() if ckpt.exists() else None, flush=True)\n"
        "if not ckpt.exists():\n"
        "    step = 0\n"
        "    @on_preempt\n"
        "    def save():\n"
        "        ckpt.write_text(f'step {step}')\n"
        "    while True:\n"
        "        step += 1\n"
        "        time.sleep(0.05)\n"
        "print('done')"
    )
    outcome = split.execute(cell, CellOptions(detach=True), {}, lambda e: None)
    wait_for_event(split, outcome.run_id, lambda e: e["type"] == "stream" and "attempt 0" in e["text"])
    job = job_of(split, outcome.run_id)
    # What Slurm does before a time limit or a preemption: the warning signal to the batch shell.
    slurm.run("scancel", "--signal=USR2", "--batch", job)
    events: list[dict] = []
    attached = split.attach(outcome.run_id, events.append, {})
    assert attached.state == "succeeded", (attached, events)
    states = [e["state"] for e in events if e["type"] == "status"]
    assert states.index("preempted") < states.index("requeued") < len(states) - 1 - states[::-1].index("running")
    text = printed(events)
    assert "attempt 0 resumes from None" in text
    assert "attempt 1 resumes from step " in text and text.rstrip().endswith("done")
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # one log, one run id, nothing lost or doubled
    assert job_field(slurm, job, "Restarts") == "1"


def test_bad_extra_option_names_the_key_and_the_fix(slurm, split_home, monkeypatch):
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    write_config(split_home, slurm_config(split_home, 'slurm = { extra = ["exclusive"] }'))
    with pytest.raises(ExecutorError, match=r"slurm.extra entry 'exclusive'.*\"--exclusive\""):
        Split().execute("1", CellOptions(), {}, lambda e: None)


def test_sbatch_options_follow_the_site_and_the_cell(split_home):
    from jupyter_split.config import Config
    from jupyter_split.executors.base import LaunchSpec
    from jupyter_split.executors.slurm import SlurmExecutor

    config = Config.model_validate({
        "experiment": {"home": "gpu", "default_remote": "gpu"},
        "sites": {"gpu": {"executor": "slurm", "jurisdiction": "SG", "accelerator": "npu", "workdir": "/w",
                          "slurm": {"partition": "a100", "time": "1:00:00", "account": "ml", "qos": "high",
                                    "constraint": "ib", "extra": ["--exclusive"], "signal": "USR1@120",
                                    "requeue": False}}}})
    ex = SlurmExecutor(config.sites["gpu"], config)
    opts = ex.sbatch_options(LaunchSpec("r1", "/w/runs/r1", [], gpus=8, nodes=2))
    assert opts == ["--job-name=r1", "--output=/w/runs/r1/runner.log", "--open-mode=append", "--chdir=/w/runs/r1",
                    "--signal=B:USR1@120", "--no-requeue", "--partition=a100", "--time=1:00:00", "--account=ml",
                    "--qos=high", "--constraint=ib", "--nodes=2", "--ntasks-per-node=8", "--gres=npu:8",
                    "--exclusive"]
    script = ex.batch_script(LaunchSpec("r1", "/w/runs/r1", ["--run-dir", "/w/runs/r1"], gpus=8, nodes=2))
    assert ('exec srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task="$SLURM_CPUS_ON_NODE" '
            "--kill-on-bad-exit=1 ") in script
    assert "jupyter_split.runner.launcher launch --nproc 8 --nnodes 2 --rdzv slurm -- --run-dir /w/runs/r1" in script


def test_submits_on_the_login_node_through_the_sites_ssh_connection(slurm, sshd, split_home):
    site = sshd.site(executor="slurm", workdir=f"{sshd.workdir}/slurm", env={"SLURM_CONF": str(slurm.conf)})
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in site.items() if key != "env")
    write_config(split_home, f"""
[experiment]
name = "slurmssh"
home = "home"
default_remote = "login"

[sites.home]
executor = "local"
jurisdiction = "CN"

[sites.login]
{table}
env = {{ SLURM_CONF = "{slurm.conf}" }}
""")
    split = Split()
    events: list[dict] = []
    namespace = {"n": 6}
    # The client has no SLURM_CONF: only the login node, reached over SSH, knows the cluster.
    outcome = split.execute("import os\nprint('job', os.environ['SLURM_JOB_ID'])\nsquare = n * n",
                            CellOptions(inputs=["n"], outputs=["square"]), namespace, events.append)
    assert outcome.state == "succeeded", (outcome, events)
    assert namespace["square"] == 36
    assert printed(events) == f"job {job_of(split, outcome.run_id)}\n"
    assert split.cancel(outcome.run_id) == "succeeded"


def test_sites_shows_the_cluster_and_its_partitions(split, slurm):
    row = next(r for r in split.sites() if r["name"] == "cluster")
    assert row["executor"] == "slurm" and row["reachable"] is True
    [line] = row["slurm"]
    assert line.split()[:3] == [f"{slurm.partition}*", "up", "1"]  # partition, availability, nodes


def test_secrets_reach_the_runner_but_no_file_script_or_command_line(slurm, split_home, monkeypatch, tmp_path):
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_API_KEY_CLUSTER", "secret-0123456789abcdef")
    write_config(split_home, slurm_config(split_home, 'wandb = { mode = "online" }'))
    split = Split()
    events: list[dict] = []
    # The cell names no secret (its code is in the run directory): it prints a digest of what it got.
    outcome = split.execute("import hashlib, os\nprint(hashlib.sha256(os.environ['WANDB_API_KEY'].encode()).hexdigest())",
                            CellOptions(), {}, events.append)
    assert outcome.state == "succeeded", (outcome, events)
    assert printed(events) == hashlib.sha256(b"secret-0123456789abcdef").hexdigest() + "\n"
    job = job_of(split, outcome.run_id)
    script = tmp_path / "batch.sh"
    slurm.run("scontrol", "write", "batch_script", job, str(script))
    shown = slurm.run("scontrol", "show", "job", "-o", job).stdout
    assert "jupyter_split.runner.launcher" in script.read_text()
    assert "secret-0123456789abcdef" not in script.read_text() + shown
    for path in (split_home / "cluster").rglob("*"):
        if path.is_file():
            assert b"secret-0123456789abcdef" not in path.read_bytes(), path


def test_a_long_runs_log_in_many_segments_reads_whole_and_from_its_end(slurm, split_home, monkeypatch, capsys):
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    write_config(split_home, slurm_config(split_home) + RUNS_SECTION)
    check_a_segmented_run(Split(), "cluster", capsys)
