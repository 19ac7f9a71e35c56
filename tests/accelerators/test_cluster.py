"""What a cluster site adds to its reading, against a real one-node Slurm and a real Ray head:
Slurm's nodes and this experiment's jobs (sinfo, squeue), Ray's resources (its dashboard's API)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from jupyter_split import aio, core
from jupyter_split.accelerators.poll import read_site
from jupyter_split.core.outcome import CellOptions
from tests.executors.test_ray import config as ray_config
from tests.executors.test_slurm import slurm_config
from tests.fixtures.core import write_config

pytestmark = pytest.mark.slow


def test_slurm_reading_has_its_nodes_and_the_experiments_running_job(slurm, split_home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    write_config(split_home, slurm_config(split_home))
    split = core.get_split()
    outcome = split.execute("import time\ntime.sleep(60)", CellOptions(site="cluster", detach=True), None,
                            lambda e: None)
    job = split.index.get(outcome.run_id).handle["job_id"]
    deadline = time.monotonic() + 60
    while True:
        reading = aio.run(read_site(split, split.config.site("cluster")))
        jobs = {j["job_id"]: j for j in reading["slurm"]["jobs"]}
        if jobs.get(job, {}).get("state") == "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not reading["errors"] and not reading["slurm"]["errors"], reading
    assert [n["node"] for n in reading["slurm"]["nodes"]] == ["localhost"]
    assert jobs[job]["run"] == outcome.run_id and jobs[job]["state"] == "RUNNING" and jobs[job]["nodes"] == "localhost"
    assert reading["nodes"][0]["cpu"]["count"] >= 1  # the machine the Slurm commands run on
    split.cancel(outcome.run_id)


def test_ray_reading_has_the_clusters_resources(ray_cluster, split_home: Path) -> None:
    write_config(split_home, ray_config(split_home, ray_cluster.address))
    split = core.get_split()
    site = next(s for s in split.config.sites.values() if s.executor == "ray")
    reading = aio.run(read_site(split, site))
    assert not reading["errors"] and not reading["ray"]["errors"], reading
    assert reading["ray"]["nodes"] and reading["ray"]["resources"]["CPU"]["total"] >= 1
