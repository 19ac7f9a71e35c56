"""The test services are real: a put and get on S3, a Slurm job completes, a Ray job finishes."""
from __future__ import annotations

import fsspec
import pytest


def test_s3_put_get_and_servers_are_separate(s3, s3_second):
    url = s3.make_bucket("services-check")
    assert url == "s3://services-check"
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.storage_options)
    fs.pipe(f"{url}/hello.txt", b"hello, s3")
    assert fs.cat(f"{url}/hello.txt") == b"hello, s3"
    # The second server is another store with other credentials: the bucket is not there.
    assert (s3.endpoint_url, s3.key) != (s3_second.endpoint_url, s3_second.key)
    other = fsspec.filesystem("s3", skip_instance_cache=True, **s3_second.storage_options)
    assert not other.exists("services-check")
    s3_second.make_bucket("services-check")
    assert other.ls("services-check") == []


def _slurm_state(slurm, job: str) -> str:
    shown = slurm.run("scontrol", "show", "job", "-o", job).stdout
    return shown.split("JobState=")[1].split()[0]


def _wait_slurm(slurm, job: str, timeout: float = 60) -> str:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _slurm_state(slurm, job)
        if state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}:
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job} still {_slurm_state(slurm, job)} after {timeout} s")


@pytest.mark.slow
def test_slurm_runs_a_wrap_job_and_a_two_task_job(slurm, tmp_path):
    out = tmp_path / "wrap.out"
    job = slurm.run("sbatch", "--parsable", f"--output={out}", "--wrap", "echo hello from $SLURM_JOB_ID").stdout.strip()
    assert _wait_slurm(slurm, job) == "COMPLETED"
    assert out.read_text().strip() == f"hello from {job}"
    out2 = tmp_path / "tasks.out"
    job = slurm.run("sbatch", "--parsable", "--ntasks=2", f"--output={out2}",
                    "--wrap", "srun bash -c 'echo rank $SLURM_PROCID'").stdout.strip()
    assert _wait_slurm(slurm, job) == "COMPLETED"
    assert sorted(out2.read_text().split("\n")[:2]) == ["rank 0", "rank 1"]


@pytest.mark.slow
def test_ray_job_finishes_through_the_jobs_api(ray_cluster):
    import sys
    import time

    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_cluster.address)
    job = client.submit_job(entrypoint=f"{sys.executable} -c \"print('hello from ray')\"")
    deadline = time.monotonic() + 120
    while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, f"ray job {job} still {client.get_job_status(job)}"
        time.sleep(0.1)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, client.get_job_logs(job)
    assert "hello from ray" in client.get_job_logs(job)
