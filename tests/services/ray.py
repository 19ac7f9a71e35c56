"""Ray for tests: a real local head node on 127.0.0.1 with its own temp dir and ports.

`ray start --block` keeps the launcher as the parent of gcs_server, raylet and the dashboard,
so the whole cluster is this process's session. It is stopped by PID: SIGTERM to the
launcher, then SIGKILL to every process left in its session (gcs_server and raylet ignore
SIGTERM). `ray stop` would stop every Ray on the machine, so it is never used.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from ._proc import ServiceError, free_ports, require, start, stop, tail, wait_for

INSTALL = "pip install 'ray[default]'"


@dataclass
class RayCluster:
    """A running Ray head: `address` is the Jobs API URL; `pids` its processes by name."""

    address: str
    gcs_address: str
    temp_dir: Path
    pid: int
    pids: dict[str, int] = field(default_factory=dict)

    def session_pids(self) -> list[int]:
        """Every live process in the launcher's session (the cluster and its workers)."""
        import psutil

        found = []
        for proc in psutil.process_iter(["pid", "status"]):
            try:
                if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(proc.info["pid"]) == self.pid:
                    found.append(proc.info["pid"])
            except (ProcessLookupError, PermissionError):
                continue
        return found

    def stop(self) -> None:
        _stop_jobs_of(self.address)
        stop(self.pid, grace=5)
        # Ray restarts what dies while it stops, so sweep the session until it is empty.
        for _ in range(20):
            left = self.session_pids()
            if not left:
                return
            stop(left, grace=0.5, sig=signal.SIGKILL)
        raise ServiceError(f"Ray processes {self.session_pids()} outlived SIGKILL")


def _stop_jobs_of(address: str) -> None:
    """Stop jobs still running (a failed test may leave one): Ray starts their entrypoints in
    sessions of their own, which the sweep of the launcher's session would miss."""
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
        running = [job.submission_id for job in client.list_jobs()
                   if job.submission_id and not job.status.is_terminal()]
        for job in running:
            client.stop_job(job)
        wait_for(lambda: all(client.get_job_status(job).is_terminal() for job in running), "Ray jobs to stop", 30)
    except (RuntimeError, OSError, ServiceError):
        pass  # a cluster that cannot answer has no jobs to stop; its processes go below


def _jobs_api_up(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=2) as reply:
            return "ray_version" in json.loads(reply.read())
    except (OSError, ValueError):
        return False


def _first_job(address: str, log: Path, proc) -> None:
    """Submit a no-op job until one succeeds: the Jobs API answers before the node's agent is up."""
    import sys

    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    submitted: list[str] = []

    def done() -> bool:
        try:
            if not submitted:
                submitted.append(client.submit_job(entrypoint=f"{sys.executable} -c pass"))
            status = client.get_job_status(submitted[0])
        except (RuntimeError, OSError):  # "No available agent ...", or a dashboard still starting
            return False
        if status in (JobStatus.FAILED, JobStatus.STOPPED):
            raise ServiceError(f"Ray's first no-op job {status}: {client.get_job_logs(submitted[0])}")
        return status == JobStatus.SUCCEEDED

    wait_for(done, f"a first Ray job at {address}", 180, log, proc)


def _named_pids(launcher: int) -> dict[str, int]:
    import psutil

    names = {}
    for child in psutil.Process(launcher).children(recursive=True):
        try:
            names.setdefault(child.name(), child.pid)
        except psutil.NoSuchProcess:
            continue
    return names


def start_ray(temp_dir: Path, num_cpus: int | None = None, attempts: int = 2) -> RayCluster:
    """Start a Ray head under `temp_dir`; raise `ServiceError` with the fix if it cannot.

    A second attempt follows a failed first: on a busy machine Ray's raylet can miss its
    fixed 30 s window to register, and a fresh start usually makes it.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(temp_dir / f"try{attempt}", num_cpus)
        except ServiceError:
            if attempt == attempts:
                raise
    raise ServiceError("start_ray needs attempts >= 1")


def _start_once(temp_dir: Path, num_cpus: int | None) -> RayCluster:
    ray = require("ray", INSTALL)
    temp_dir.mkdir(parents=True)
    (gcs, dashboard, client, node_manager, object_manager, agent_listen, agent_grpc, runtime_env,
     metrics) = free_ports(9)
    # These come from the ephemeral range, above Ray's worker ports (10002-19999), as Ray needs.
    cpus = num_cpus or max(2, os.cpu_count() or 2)
    argv = [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp_dir}", f"--num-cpus={cpus}", "--num-gpus=0",
            "--dashboard-host=127.0.0.1", "--disable-usage-stats", "--include-dashboard=true",
            f"--port={gcs}", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
            f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
            f"--dashboard-agent-listen-port={agent_listen}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}"]
    # Without this, Ray swaps 127.0.0.1 for the machine's other address and listens on all.
    # On a busy machine the node's dashboard agent can take long to come up; give it time.
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_agent_register_timeout_ms": "300000"}
    log = temp_dir / "ray-start.log"
    proc = start(argv, log, env)
    address = f"http://127.0.0.1:{dashboard}"
    cluster = RayCluster(address=address, gcs_address=f"127.0.0.1:{gcs}", temp_dir=temp_dir,
                         pid=proc.pid)
    try:
        wait_for(lambda: _jobs_api_up(address), f"Ray Jobs API at {address}", 180, log, proc)
        _first_job(address, log, proc)
    except ServiceError as err:
        cluster.stop()
        dash = temp_dir / "session_latest" / "logs" / "dashboard.log"
        raise ServiceError(f"{err}\ndashboard log:\n{tail(dash)}") from None
    cluster.pids = {"ray start": proc.pid, **_named_pids(proc.pid)}
    return cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A real local Ray head: `.address` (Jobs API URL), `.pid`, `.pids`, `.temp_dir`."""
    # Short path: Ray's unix sockets live under it and socket paths are limited to 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="jsray-"))
    cluster = start_ray(temp_dir)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
