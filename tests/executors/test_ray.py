"""Cells on a real local Ray head (127.0.0.1, its own temp dir) through Ray's Jobs API."""
from __future__ import annotations

import sys
import time

import pytest

from jupyter_split.core.outcome import CellOptions

from jupyter_split.core.split import Split
from jupyter_split.runs.events import read_events
from tests.fixtures.core import write_config
from tests.fixtures.long_logs import RUNS_SECTION, check_a_segmented_run

pytestmark = pytest.mark.slow


def ray_site(root, address: str, extra: str = "") -> str:
    return f"""
[sites.ray]
executor = "ray"
jurisdiction = "MY"
accelerator = "cpu"
python = "{sys.executable}"
workdir = "{root}/ray"
ray = {{ address = "{address}"{extra} }}
"""


def config(root, address: str) -> str:
    return f"""
[experiment]
name = "raytest"
home = "home"
default_remote = "ray"

[sites.home]
executor = "local"
jurisdiction = "CN"
accelerator = "cpu"
{ray_site(root, address)}"""


@pytest.fixture
def split(ray_cluster, split_home) -> Split:
    write_config(split_home, config(split_home, ray_cluster.address))
    return Split()


def job_status(ray_cluster, job: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(ray_cluster.address).get_job_status(job).value)


def test_cell_runs_as_a_ray_job_with_output_and_out_variables(split, ray_cluster):
    events: list[dict] = []
    namespace = {"xs": [1, 2, 3]}
    outcome = split.execute("import os\nprint('in', os.path.basename(os.getcwd()))\nys = [x * 10 for x in xs]\nlen(ys)",
                            CellOptions(inputs=["xs"], outputs=["ys"]), namespace, events.append)
    assert outcome.state == "succeeded", (outcome, events)
    assert namespace["ys"] == [10, 20, 30]
    assert "".join(e["text"] for e in events if e["type"] == "stream") == f"in {outcome.run_id}\n"
    assert [e["data"]["text/plain"] for e in events if e["type"] == "result"] == ["3"]
    job = split.index.get(outcome.run_id).handle["job_id"]
    assert job == outcome.run_id
    deadline = time.monotonic() + 30
    while job_status(ray_cluster, job) == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job_status(ray_cluster, job) == "SUCCEEDED"


def test_sites_shows_the_ray_cluster(split):
    import ray

    row = next(r for r in split.sites() if r["name"] == "ray")
    assert row["reachable"] is True and row["ray"] == ray.__version__


def test_cancel_stops_the_ray_job(split, ray_cluster):
    outcome = split.execute("import time\nprint('started', flush=True)\ntime.sleep(600)",
                            CellOptions(detach=True), {}, lambda e: None)
    run_dir = split.index.get(outcome.run_id).run_dir
    deadline = time.monotonic() + 120
    while not any(e["type"] == "stream" for e in read_events(run_dir)):
        assert time.monotonic() < deadline, read_events(run_dir)
        time.sleep(0.1)
    assert split.cancel(outcome.run_id) == "cancelled"
    assert read_events(run_dir)[-1]["state"] == "cancelled"
    deadline = time.monotonic() + 30
    while job_status(ray_cluster, outcome.run_id) == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job_status(ray_cluster, outcome.run_id) == "STOPPED"


def test_a_runner_that_cannot_start_reports_the_jobs_own_logs(ray_cluster, split_home):
    write_config(split_home, config(split_home, ray_cluster.address).replace(
        f'python = "{sys.executable}"', 'python = "/nonexistent/python3"'))
    outcome = Split().execute("1", CellOptions(), {}, lambda e: None)
    assert outcome.state == "failed"
    assert "ended FAILED" in outcome.reason and "/nonexistent/python3" in outcome.reason


def test_unreachable_ray_names_the_address_and_the_key(split_home):
    write_config(split_home, config(split_home, "http://127.0.0.1:9"))
    with pytest.raises(Exception, match=r"cannot reach Ray's Jobs API at http://127.0.0.1:9.*ray.address"):
        Split().execute("1", CellOptions(), {}, lambda e: None)


def test_no_secret_goes_into_a_ray_jobs_visible_environment(split_home):
    import json

    from jupyter_split.config import load_config
    from jupyter_split.protocol import PAYLOAD_VAR
    from jupyter_split.executors.base import LaunchSpec
    from jupyter_split.executors.ray import RayExecutor

    write_config(split_home, config(split_home, "http://127.0.0.1:8265"))
    cfg = load_config()
    payload = {"env": {"WANDB_API_KEY": "secret-key"}, "site": "ray", "accelerator": "cpu"}
    spec = LaunchSpec("r1", "/w/r1", [], env={"JUPYTER_SPLIT_SITE": "ray"}, stdin=json.dumps(payload).encode())
    with pytest.warns(RuntimeWarning, match="the W&B key was not sent.*WANDB_API_KEY in the Ray cluster"):
        env_vars = RayExecutor(cfg.sites["ray"], cfg).runtime_env(spec)["env_vars"]
    assert "secret-key" not in json.dumps(env_vars)
    assert json.loads(env_vars[PAYLOAD_VAR]) == {"site": "ray", "accelerator": "cpu"}
    assert env_vars["JUPYTER_SPLIT_SITE"] == "ray"


def test_credentials_in_the_config_are_named_before_a_ray_job_shows_them(split_home):
    import json

    from jupyter_split.config import load_config
    from jupyter_split.executors.base import LaunchSpec
    from jupyter_split.executors.ray import RayExecutor

    write_config(split_home, config(split_home, "http://127.0.0.1:8265"))
    cfg = load_config()
    dumped = cfg.model_dump(mode="json")
    dumped["sites"]["home"]["storage_options"] = {"key": "AKIA-example", "client_kwargs": {"endpoint_url": "x"}}
    spec = LaunchSpec("r1", "/w/r1", [], stdin=json.dumps({"config": dumped, "site": "ray"}).encode())
    with pytest.warns(RuntimeWarning, match=r"holds sites.home.storage_options.key: give the Ray cluster its own"):
        RayExecutor(cfg.sites["ray"], cfg).runtime_env(spec)


def test_a_long_runs_log_in_many_segments_reads_whole_and_from_its_end(ray_cluster, split_home, capsys):
    write_config(split_home, config(split_home, ray_cluster.address) + RUNS_SECTION)
    check_a_segmented_run(Split(), "ray", capsys)
