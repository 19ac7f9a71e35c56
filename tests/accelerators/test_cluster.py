"""What a cluster site adds to its reading, against a real one-node Slurm and a real Ray head:
Slurm's nodes and this experiment's jobs (sinfo, squeue), Ray's resources (its dashboard's API)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from jupyter_split import aio, core
from jupyter_split.accelerators.poll import read_site
from jupyter_split.core.outcome import CellOptions
from tests.accelerators.conftest import stand_in_path
from tests.executors.test_ray import config as ray_config
from tests.executors.test_slurm import slurm_config
from tests.fixtures.core import write_config

pytestmark = pytest.mark.slow


def test_slurm_reading_has_its_nodes_the_experiments_jobs_and_their_compute_nodes_cards(
        slurm, split_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slurm's nodes (sinfo) and this experiment's running job (squeue); and, since a Slurm site's cards
    are on its compute nodes, the probe run inside each running job (a step beside the job's own),
    naming the job's run on the cards bound to it."""
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", stand_in_path())  # the STAND-IN nvidia-smi: the job's step inherits it
    # no GPU here, so no GRES: what Slurm sets in a step bound to card 1 is set by hand (a stand-in)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    write_config(split_home, slurm_config(split_home))
    split = core.get_split()
    outcome = split.execute("import time\ntime.sleep(120)", CellOptions(site="cluster", detach=True), None,
                            lambda e: None)
    job = split.index.get(outcome.run_id).handle["job_id"]
    deadline = time.monotonic() + 90
    while True:
        reading = aio.run(read_site(split, split.config.site("cluster")))
        computes = [n for n in reading["nodes"] if n.get("role") == "compute"]
        if computes or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not reading["errors"] and not reading["slurm"]["errors"], reading
    assert [n["node"] for n in reading["slurm"]["nodes"]] == ["localhost"]
    jobs = {j["job_id"]: j for j in reading["slurm"]["jobs"]}
    assert jobs[job]["run"] == outcome.run_id and jobs[job]["state"] == "RUNNING" and jobs[job]["nodes"] == "localhost"
    assert reading["nodes"][0]["role"] == "login" and reading["nodes"][0]["cpu"]["count"] >= 1
    [node] = computes
    assert (node["node"], node["job"], node["run"]) == ("localhost", job, outcome.run_id)  # the name sinfo gives
    assert node["host"] == reading["nodes"][0]["node"]  # its host name: this machine, as the login node is
    cards = {card["index"]: card for card in node["cards"] if card["tool"] == "nvidia-smi"}
    assert set(cards) == {0, 1} and cards[0]["model"] == "NVIDIA H100 80GB HBM3"
    assert cards[1]["run"] == outcome.run_id and cards[0]["run"] is None
    assert node["cpu"]["count"] >= 1 and node["memory"]["total"] > 0
    split.cancel(outcome.run_id)


def test_ray_reading_has_the_clusters_resources(ray_cluster, split_home: Path) -> None:
    write_config(split_home, ray_config(split_home, ray_cluster.address))
    split = core.get_split()
    site = next(s for s in split.config.sites.values() if s.executor == "ray")
    reading = aio.run(read_site(split, site))
    assert not reading["errors"] and not reading["ray"]["errors"], reading
    assert reading["ray"]["nodes"] and reading["ray"]["resources"]["CPU"]["total"] >= 1
