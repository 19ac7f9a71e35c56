"""Clusters: a trivial cell through Slurm and through Ray, against the bare scheduler doing nothing.

    python -m benchmarks clusters [--repeat N]
Peers: `sbatch --wrap true` waited to the end (job state polled every 50 ms); a Jobs API
submission of `python -c pass` waited to SUCCEEDED (polled every 50 ms); and, for context,
the same with `python -c "import torch"`, which any PyTorch job pays and the runner does too
(it predefines `device`). All run on the real single-node Slurm and local Ray head the tests
use, started here.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from benchmarks.common import best_of, report, scratch_data_dir
from jupyter_split.config import parse_config
from jupyter_split.core.outcome import CellOptions
from jupyter_split.core.split import Split

POLL = 0.05


def _quiet(event: dict) -> None:
    if event["type"] == "error":
        raise RuntimeError("\n".join(event["traceback"]))


def _split(root: str, site: str) -> Split:
    text = f"""
[experiment]
name = "bench"
home = "home"
default_remote = "cluster"
[sites.home]
executor = "local"
jurisdiction = "CN"
[sites.cluster]
jurisdiction = "SG"
accelerator = "cpu"
python = "{sys.executable}"
workdir = "{root}/cluster"
{site}
"""
    return Split(parse_config(tomllib.loads(text), "bench"))


def _cell(split: Split) -> None:
    outcome = split.execute("pass", CellOptions(), {}, _quiet)
    assert outcome.state == "succeeded", outcome


def slurm_rows(repeat: int) -> list[tuple[str, float, float, str]]:
    from tests.services.slurm import start_slurm

    state = Path(tempfile.mkdtemp(prefix="jsb-slurm-"))
    cluster = start_slurm(state)
    os.environ.update(cluster.env)
    try:
        with scratch_data_dir() as root:
            split = _split(root, 'executor = "slurm"')
            ours = best_of(lambda: _cell(split), repeat)

            def bare(command: str) -> None:
                job = cluster.run("sbatch", "--parsable", f"--output={state}/bare.out", "--wrap", command).stdout.strip()
                while cluster.run("scontrol", "show", "job", "-o", job).stdout.split("JobState=")[1].split()[0] \
                        not in ("COMPLETED", "FAILED", "CANCELLED"):
                    time.sleep(POLL)

            peer = best_of(lambda: bare("true"), repeat)
            torch_peer = best_of(lambda: bare(f"{sys.executable} -c 'import torch'"), repeat)
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
    return [("trivial cell through Slurm vs sbatch --wrap true waited to the end, s", ours, peer, "<= 1.2x"),
            ("same cell vs sbatch --wrap \"python -c 'import torch'\", s", ours, torch_peer, "(context)")]


def ray_rows(repeat: int) -> list[tuple[str, float, float, str]]:
    from ray.job_submission import JobStatus, JobSubmissionClient

    from tests.services.ray import start_ray

    temp = Path(tempfile.mkdtemp(prefix="jsbray-"))
    cluster = start_ray(temp)
    try:
        with scratch_data_dir() as root:
            split = _split(root, f'executor = "ray"\nray = {{ address = "{cluster.address}" }}')
            ours = best_of(lambda: _cell(split), repeat)
            client = JobSubmissionClient(cluster.address)

            def bare(code: str) -> None:
                job = client.submit_job(entrypoint=f"{sys.executable} -c '{code}'")
                while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                    time.sleep(POLL)

            peer = best_of(lambda: bare("pass"), repeat)
            torch_peer = best_of(lambda: bare("import torch"), repeat)
    finally:
        cluster.stop()
        shutil.rmtree(temp, ignore_errors=True)
    return [("trivial cell through Ray vs Jobs API `python -c pass` waited to the end, s", ours, peer, "<= 1.2x"),
            ("same cell vs Jobs API `python -c \"import torch\"`, s", ours, torch_peer, "(context)")]


def runner_start(repeat: int) -> tuple[float, float]:
    """What a one-shot runner costs to start, next to a bare interpreter (explains the rows above)."""
    ours = best_of(lambda: subprocess.run([sys.executable, "-c", "import jupyter_split.runner.cluster as c; "
                                           "from jupyter_split.accelerators.devices import runner_globals; runner_globals('cpu')"],
                                          check=True), repeat)
    peer = best_of(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeat)
    return ours, peer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks clusters")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    ours, peer = runner_start(args.repeat)
    print(report([("one-shot runner start (imports, device globals) vs python -c pass, s", ours, peer, "(context)")]),
          flush=True)
    print(report(slurm_rows(args.repeat)), flush=True)
    print(report(ray_rows(args.repeat)), flush=True)
    return 0
