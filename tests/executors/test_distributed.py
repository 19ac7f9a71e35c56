"""Cells on several ranks under torchrun: a 2-rank gloo all_reduce on the CPU, here and under Slurm."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from jupyter_split.core.outcome import CellOptions

from jupyter_split.core.split import Split
from jupyter_split.errors import DistributedError
from tests.fixtures.core import text, write_config

pytestmark = pytest.mark.slow

ALL_REDUCE = (
    "import torch, torch.distributed as dist\n"
    "t = torch.tensor([float(rank + 1)])\n"
    "dist.all_reduce(t)\n"
    "print(f'rank {rank} of {world_size} on {device} via {dist_backend}: {t.item()}')\n"
    "total = t.item()"
)


def config(root, cluster: str = "") -> str:
    return f"""
[experiment]
name = "dist"
home = "home"
default_remote = "home"

[sites.home]
executor = "local"
jurisdiction = "CN"
accelerator = "cpu"
{cluster}
"""


def printed(events: list[dict]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "stream")


def check_all_reduce(split: Split, site: str) -> None:
    events: list[dict] = []
    namespace: dict = {}
    outcome = split.execute(ALL_REDUCE, CellOptions(site=site, gpus=2, outputs=["total"]), namespace, events.append)
    assert outcome.state == "succeeded", (outcome, events)
    assert namespace["total"] == 3.0  # 1 + 2: both ranks took part
    # Rank 0's events are the cell's output; rank 1's are kept apart.
    assert printed(events) == "rank 0 of 2 on cpu via gloo: 3.0\n"
    assert printed(split.run_events(outcome.run_id, rank=1)) == "rank 1 of 2 on cpu via gloo: 3.0\n"


def test_two_rank_all_reduce_through_the_magic_on_the_local_executor(kernel, split_home):
    write_config(split_home, config(split_home))
    outputs = kernel.ok("%%on home --gpus 2 --out total\n" + ALL_REDUCE)
    # Rank 0's output is the cell's; both ranks took part in the sum (1 + 2).
    assert text(outputs) == "rank 0 of 2 on cpu via gloo: 3.0\n"
    assert text(kernel.ok("print(total)")) == "3.0\n"
    run_id = Split().list_runs(limit=1)[0].run_id
    # `%split logs RUN --rank 1` through the command line, the same verb as the magic.
    logs = subprocess.run([sys.executable, "-m", "jupyter_split.cli", "logs", run_id, "--rank", "1"],
                          capture_output=True, text=True, timeout=120)
    assert "rank 1 of 2 on cpu via gloo: 3.0" in logs.stdout, logs.stderr


def test_the_first_failing_rank_is_the_cells_error(split_home):
    write_config(split_home, config(split_home))
    cell = ("import torch, torch.distributed as dist\n"
            "if rank == 1:\n    raise ValueError('rank one has bad data')\n"
            "t = torch.ones(1)\ndist.all_reduce(t)")
    outcome = Split().execute(cell, CellOptions(gpus=2), {}, lambda e: None)
    assert outcome.state == "failed"
    assert outcome.reason.startswith("rank 1 failed first: ValueError: rank one has bad data")
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(outcome.error["traceback"]))
    assert traceback.startswith("[rank 1 of 2]") and "raise ValueError('rank one has bad data')" in traceback


def test_more_nodes_than_one_machine_is_a_clear_error(split_home):
    write_config(split_home, config(split_home))
    with pytest.raises(DistributedError, match=r"--nodes 2 needs a site whose executor spans machines"):
        Split().execute("1", CellOptions(gpus=2, nodes=2), {}, lambda e: None)


def use_slurm_site(slurm, split_home, monkeypatch) -> None:
    """The config with a `cluster` site on the test Slurm, which this process's clients reach."""
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    cluster = f"""
[sites.cluster]
executor = "slurm"
jurisdiction = "SG"
accelerator = "cpu"
python = "{sys.executable}"
workdir = "{split_home}/cluster"
"""
    write_config(split_home, config(split_home, cluster))


def test_two_rank_all_reduce_under_slurm(slurm, split_home, monkeypatch):
    use_slurm_site(slurm, split_home, monkeypatch)
    split = Split()
    check_all_reduce(split, "cluster")
    job = split.list_runs(limit=1)[0].handle["job_id"]
    shown = slurm.run("scontrol", "show", "job", "-o", job).stdout
    assert "NumTasks=2" in shown  # the job holds one Slurm task per rank


def test_two_rank_all_reduce_under_ray(ray_cluster, split_home):
    from tests.executors.test_ray import ray_site

    write_config(split_home, config(split_home, ray_site(split_home, ray_cluster.address)))
    check_all_reduce(Split(), "ray")


def test_preemption_of_a_two_rank_slurm_job_resumes_every_rank(slurm, split_home, monkeypatch):
    import time

    from jupyter_split.runs.events import read_events

    use_slurm_site(slurm, split_home, monkeypatch)
    split = Split()
    cell = ("import os, pathlib, time, torch, torch.distributed as dist\n"
            "ckpt = pathlib.Path(f'ckpt-{rank}.txt')\n"
            "print('attempt', os.environ.get('SLURM_RESTART_COUNT', '0'), 'resumes', ckpt.exists(), flush=True)\n"
            "if not ckpt.exists():\n"
            "    @on_preempt\n"
            "    def save():\n"
            "        ckpt.write_text('saved')\n"
            "    while True:\n"
            "        time.sleep(0.05)\n"
            "t = torch.ones(1)\ndist.all_reduce(t)\nprint('sum', t.item())")
    outcome = split.execute(cell, CellOptions(site="cluster", gpus=2, detach=True), {}, lambda e: None)
    run_dir = split.index.get(outcome.run_id).run_dir
    deadline = time.monotonic() + 120
    while not all(any("attempt 0" in e.get("text", "") for e in read_events(d))
                  for d in (run_dir, f"{run_dir}/ranks/1")):
        assert time.monotonic() < deadline, read_events(run_dir)
        time.sleep(0.1)
    job = split.index.get(outcome.run_id).handle["job_id"]
    slurm.run("scancel", "--signal=USR2", "--batch", job)  # the warning, to the batch shell
    events: list[dict] = []
    attached = split.attach(outcome.run_id, events.append, {})
    assert attached.state == "succeeded", (attached, events)
    states = [e["state"] for e in events if e["type"] == "status"]
    assert "preempted" in states and "requeued" in states
    assert printed(events).endswith("attempt 1 resumes True\nsum 2.0\n")
    assert "attempt 1 resumes True\nsum 2.0\n" in printed(split.run_events(outcome.run_id, rank=1))


def test_the_multi_node_path_srun_and_c10d_rendezvous_on_one_node(slurm, split_home, monkeypatch, tmp_path):
    """What `--nodes M` runs on each node (one node here): srun, then torchrun meeting at the first node."""
    import json
    import time

    from jupyter_split.protocol import PAYLOAD_VAR
    from jupyter_split.runs.events import read_events

    use_slurm_site(slurm, split_home, monkeypatch)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "request.json").write_text(json.dumps(
        {"run_id": "multi", "code": ALL_REDUCE + "\nimport os\nprint('rdzv', os.environ['TORCHELASTIC_RUN_ID'])", "out": [], "timeout": None, "name": None, "has_in": False,
         "site": "cluster", "wandb": False, "env": {}}))
    payload = json.dumps({"config": Split().config.model_dump(mode="json"), "site": "cluster", "accelerator": "cpu"})
    monkeypatch.setenv(PAYLOAD_VAR, payload)
    launch = [sys.executable, "-m", "jupyter_split.runner.launcher", "launch", "--nproc", "2", "--nnodes", "1",
              "--rdzv", "slurm", "--", "--run-dir", str(run_dir), "--stdin-json"]
    job = slurm.run("sbatch", "--parsable", "--ntasks-per-node=2", f"--output={run_dir}/runner.log", "--wrap",
                    'srun --nodes=1 --ntasks=1 --ntasks-per-node=1 --cpus-per-task="$SLURM_CPUS_ON_NODE" '
                    + " ".join(launch)).stdout.strip()
    deadline = time.monotonic() + 120
    while not any(e.get("final") for e in read_events(run_dir)):
        assert time.monotonic() < deadline, (read_events(run_dir), (run_dir / "runner.log").read_text())
        time.sleep(0.2)
    # The rendezvous is the job's (its id), not torchrun's standalone one.
    assert printed(read_events(run_dir)) == f"rank 0 of 2 on cpu via gloo: 3.0\nrdzv {job}\n", \
        (run_dir / "runner.log").read_text()
    assert printed(read_events(run_dir / "ranks" / "1")) == f"rank 1 of 2 on cpu via gloo: 3.0\nrdzv {job}\n"
