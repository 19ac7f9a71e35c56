"""W&B context per site, keys, the run-file reader and writer, artifacts and the guard (no network)."""
from __future__ import annotations

import json
import os
import secrets
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from jupyter_split import tracking
from jupyter_split.tracking import context as tracking_context
from jupyter_split.tracking import offline as wandb_offline
from jupyter_split.config import parse_config
from jupyter_split.policy import ResidencyError, audit_entries
from jupyter_split.sync.manifest import FileEntry, Manifest


def two_sites(root: Path, home_wandb: str = 'mode = "offline"', sg_wandb: str = 'mode = "offline"'):
    import tomllib

    text = f"""
[experiment]
name = "llm-split"
home = "home"
default_remote = "sg"
[sites.sg]
jurisdiction = "SG"
accelerator = "cuda"
storage = "{(root / 'sg').as_uri()}"
wandb = {{ {sg_wandb} }}
[sites.home]
jurisdiction = "CN"
accelerator = "npu"
storage = "{(root / 'home').as_uri()}"
wandb = {{ {home_wandb} }}
[policy]
audit_log = "{root / 'audit.jsonl'}"
metrics_abroad = ["loss", "eval/*"]
"""
    return parse_config(tomllib.loads(text), "test")


def test_runner_env_puts_every_cell_in_the_experiment(tmp_path):
    config = two_sites(tmp_path, home_wandb='mode = "online", base_url = "https://wandb.corp.example", entity = "team"',
                       sg_wandb='mode = "offline", project = "llm"')
    sg = tracking.runner_env(config, config.site("sg"), "llm-split-sg-1", "pretrain", "/scratch/runs/1")
    assert sg == {
        "WANDB_PROJECT": "llm", "WANDB_RUN_GROUP": "llm-split", "WANDB_JOB_TYPE": "pretrain",
        "WANDB_TAGS": "site:sg,jurisdiction:SG,accelerator:cuda", "WANDB_MODE": "offline",
        "WANDB_NAME": "llm-split-sg-1", "WANDB_DIR": "/scratch/runs/1",
    }
    home = tracking.runner_env(config, config.home, "llm-split-home-2", None)
    assert home["WANDB_PROJECT"] == "llm-split"          # no project: the experiment's name
    assert home["WANDB_JOB_TYPE"] == "home"              # no --name: the site is the phase
    assert home["WANDB_BASE_URL"] == "https://wandb.corp.example" and home["WANDB_ENTITY"] == "team"
    assert home["WANDB_MODE"] == "online" and "WANDB_DIR" not in home
    assert not any("KEY" in k for k in {**sg, **home})


def test_home_site_with_a_server_abroad_logs_offline_under_a_metric_allowlist(tmp_path):
    config = two_sites(tmp_path, home_wandb='mode = "online"', sg_wandb='mode = "online"')   # both: W&B's cloud
    assert tracking.runner_env(config, config.home, "r", None)["WANDB_MODE"] == "offline"
    assert tracking.runner_env(config, config.site("sg"), "r", None)["WANDB_MODE"] == "online"
    at_home = two_sites(tmp_path, home_wandb='mode = "online", base_url = "https://wandb.corp.example"')
    assert tracking.runner_env(at_home, at_home.home, "r", None)["WANDB_MODE"] == "online"


def test_auto_accelerator_tag_becomes_what_the_runner_found(monkeypatch):
    monkeypatch.setenv("WANDB_TAGS", "site:home,jurisdiction:CN,accelerator:auto")
    with tracking.cell_tracking({"run_id": "r", "code": ""}, "/nonexistent", {}, "npu:0") as cell:
        assert cell.run is None                                   # no --wandb: no run is opened
    assert os.environ["WANDB_TAGS"] == "site:home,jurisdiction:CN,accelerator:npu"


def test_server_jurisdiction(tmp_path):
    config = two_sites(tmp_path, home_wandb='base_url = "https://wandb.corp.example"')
    assert tracking.server_jurisdiction(config.site("sg")) == "US"       # W&B's cloud
    assert tracking.server_jurisdiction(config.home) == "CN"             # self-hosted: the site's own
    pinned = two_sites(tmp_path, home_wandb='base_url = "https://wandb.corp.example", jurisdiction = "sg"')
    assert tracking.server_jurisdiction(pinned.home) == "SG"


def test_bad_wandb_jurisdiction_is_a_config_error(tmp_path):
    from jupyter_split.config import ConfigError

    with pytest.raises(ConfigError, match=r"sites.home.wandb.jurisdiction.*ISO 3166"):
        two_sites(tmp_path, home_wandb='jurisdiction = "China"')


def test_runner_secrets_only_for_online_sites_and_per_site_first(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY_HOME", raising=False)
    config = two_sites(tmp_path, home_wandb='mode = "online", base_url = "https://wandb.corp.example"')
    monkeypatch.setenv("WANDB_API_KEY", "generic-key")
    assert tracking.runner_secrets(config.site("sg")) == {}              # offline: no key travels
    assert tracking.runner_secrets(config.home) == {"WANDB_API_KEY": "generic-key"}
    monkeypatch.setenv("WANDB_API_KEY_HOME", "home-key")
    assert tracking.runner_secrets(config.home) == {"WANDB_API_KEY": "home-key"}


def test_api_key_from_netrc_for_the_sites_server(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_API_KEY_HOME", raising=False)
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine wandb.corp.example login user password netrc-key\n")
    netrc.chmod(0o600)
    config = two_sites(tmp_path, home_wandb='mode = "online", base_url = "https://wandb.corp.example/"')
    assert tracking.runner_secrets(config.home) == {"WANDB_API_KEY": "netrc-key"}
    assert tracking.api_key(config.site("sg")) is None                   # api.wandb.ai has no entry


# -- the run-file format ----------------------------------------------------------------

def _history(i: int, text: str):
    from wandb.proto import wandb_internal_pb2 as pb

    record = pb.Record()
    item = record.history.item.add()
    item.key, item.value_json = f"k{i}", json.dumps(text)
    return record


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=70_000), min_size=1, max_size=12))
def test_records_survive_the_block_framing(sizes):
    records = [_history(i, "x" * n) for i, n in enumerate(sizes)]
    data = wandb_offline.encode(r.SerializeToString() for r in records)
    assert list(wandb_offline.iter_payloads(data)) == [r.SerializeToString() for r in records]


def test_torn_tail_ends_the_stream_and_damage_is_named(tmp_path):
    records = [_history(i, "v" * 5000) for i in range(10)]
    data = wandb_offline.encode(r.SerializeToString() for r in records)
    assert len(list(wandb_offline.iter_payloads(data[: len(data) - 100]))) == 9
    damaged = bytearray(data)
    damaged[20_000] ^= 0xFF
    with pytest.raises(wandb_offline.WandbFileError, match="checksum mismatch at byte"):
        list(wandb_offline.iter_payloads(bytes(damaged), "run-x.wandb"))
    with pytest.raises(wandb_offline.WandbFileError, match="not a W&B run file"):
        list(wandb_offline.iter_payloads(b"PK\x03\x04" + data[4:], "notes.zip"))
    assert data[:7] == struct.pack("<4sHB", b":W&B", 0xBEE1, 0)


def test_reader_reads_what_wandb_writes_and_the_filter_keeps_only_allowed_metrics(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(dir=str(tmp_path), project="p", group="g", job_type="train", tags=["a", "b"],
                     config={"lr": 0.1, "model": {"layers": 2}})
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1), "eval/acc": step / 10, "pii_rows": 7})
    print("console line")
    run.summary["best"] = 0.5
    run.finish()
    wandb.teardown()  # finish can return before the run file is written; teardown waits for it
    [path] = wandb_offline.find_run_files(tmp_path)
    read = wandb_offline.load_run(path)
    assert (read.project, read.group, read.job_type, read.tags) == ("p", "g", "train", ["a", "b"])
    assert read.config == {"lr": 0.1, "model": {"layers": 2}}
    assert [row["loss"] for row in read.history] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert read.metrics() == {"loss": pytest.approx(1 / 3), "eval/acc": 0.2, "pii_rows": 7, "best": 0.5}
    assert read.offline and read.state == "finished"

    keep = lambda key: key in ("loss",) or key.startswith("eval/")  # noqa: E731
    out = tmp_path / "filtered.wandb"
    wandb_offline.write_records(out, wandb_offline.filter_records(wandb_offline.read_records(path), keep, drop_output=True))
    filtered = wandb_offline.load_run(out)
    assert all(set(row) - {"_step", "_runtime", "_timestamp"} == {"loss", "eval/acc"} for row in filtered.history)
    assert set(filtered.metrics()) == {"loss", "eval/acc"}
    kinds = {r.WhichOneof("record_type") for r in wandb_offline.read_records(out)}
    assert not kinds & {"output", "output_raw", "files"} and {"run", "history", "exit"} <= kinds


# -- artifacts and the guard ------------------------------------------------------------

def _manifest(labels=()):
    return Manifest(files=[FileEntry("model.safetensors", 1000, "ab" * 32), FileEntry("tree.json", 10, "cd" * 32)],
                    run_id="llm-split-sg-1", site="sg", labels=list(labels))


def test_manifest_digest_is_the_same_for_every_copy():
    one, other = _manifest(), _manifest(["CN"])
    other.files.reverse()
    other.created += 100
    assert tracking.manifest_sha256(one) == tracking.manifest_sha256(other)
    assert tracking.artifact_name("sftp://login.sg/scratch/ckpt/step-100/") == "ckpt-step-100"


def test_sftp_and_oss_checkpoints_are_references_with_the_manifest_digest(tmp_path):
    manifest = _manifest(["CN"])
    for url in ("sftp://login.sg.example/scratch/ckpt/step-100", "oss://corp-models/ckpt/step-100"):
        artifact = tracking.build_artifact(url, manifest)
        [entry] = artifact.manifest.entries.values()
        assert (entry.ref, entry.digest, entry.size) == (url, tracking.manifest_sha256(manifest), 1010)
        assert artifact.metadata["labels"] == ["CN"] and artifact.metadata["producer_site"] == "sg"


def test_file_checkpoint_is_a_native_reference(tmp_path):
    ckpt = tmp_path / "step-1"
    ckpt.mkdir()
    (ckpt / "a.bin").write_bytes(b"weights")
    artifact = tracking.build_artifact(ckpt.as_uri(), _manifest())
    entry = artifact.manifest.entries["a.bin"]
    assert entry.ref == (ckpt / "a.bin").as_uri() and entry.size == 7   # W&B checksummed it itself


def test_labelled_artifact_bound_for_a_foreign_server_is_refused_and_audited(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_SPLIT_SITE", "home")
    config = two_sites(tmp_path, home_wandb='mode = "online", base_url = "https://wandb.corp.example"')
    url = (tmp_path / "home" / "ft-1").as_uri()
    with pytest.raises(ResidencyError) as refused:
        tracking.guard_artifact(url, config.site("sg"), {"CN"}, 1010, config)
    message = str(refused.value)
    assert "ckpt-ft-1" in message and "CN" in message and "US" in message and "declassify" in message
    tracking.guard_artifact(url, config.home, {"CN"}, 1010, config)   # the home server: stays in CN
    [entry] = audit_entries(decision="refused", config=config)
    assert entry["kind"] == "wandb-artifact" and entry["to_jurisdiction"] == "US" and entry["labels"] == ["CN"]
    assert entry["dest"].startswith("https://api.wandb.ai")


def test_online_run_keeps_a_refused_artifact_back_with_a_warning(tmp_path, monkeypatch):
    from jupyter_split import config as config_module

    config = two_sites(tmp_path, home_wandb='mode = "online"')       # home logs to W&B's cloud (US)
    monkeypatch.setenv("JUPYTER_SPLIT_SITE", "home")
    config_module.activate(config)
    try:
        url = (tmp_path / "home" / "ft-9").as_uri()
        with pytest.warns(UserWarning, match=r"(?s)ckpt-ft-9.*CN.*only its W&B artifact was kept back"):
            assert tracking_context._may_send(url, {"CN"}, _manifest(["CN"])) is False
        assert tracking_context._may_send(url, set(), _manifest()) is True   # unlabelled weights may go
    finally:
        config_module.activate(None)
    decisions = [(e["item"], e["decision"]) for e in audit_entries(config=config)]
    assert decisions == [("ckpt-ft-9", "refused"), ("ckpt-ft-9", "allowed")]


def test_nothing_to_log_without_an_open_run(tmp_path):
    import subprocess
    import sys

    # a fresh process: wandb imported by nobody, so no run and no import of it either
    code = ("import sys; from jupyter_split import tracking; from jupyter_split.sync.manifest import Manifest; "
            "m = Manifest(files=[]); print(tracking.log_checkpoint('file:///x', m), "
            "tracking.use_checkpoint('file:///x', m), 'wandb' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "JUPYTER_SPLIT_DATA": str(tmp_path)})
    assert done.stdout.split() == ["None", "None", "False"]


def test_tracking_does_not_import_wandb():
    import subprocess
    import sys

    code = ("import sys; from jupyter_split import tracking, config; c = config.default_config(); "
            "tracking.runner_env(c, c.home, 'r', None); tracking.runner_secrets(c.home); print('wandb' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True)
    assert done.stdout.strip() == "False"


def test_sync_plans_only_home_offline_runs_and_knows_a_cut_off_one(tmp_path, monkeypatch):
    from wandb.proto import wandb_internal_pb2 as pb

    from jupyter_split.tracking import sites as wandb_sites

    monkeypatch.setenv("JUPYTER_SPLIT_DATA", str(tmp_path / "data"))
    config = two_sites(tmp_path)
    runs = []
    for site, folder, exits in (("home", "offline-run-20260101_000000-aaa", True),
                                ("home", "offline-run-20260101_000001-bbb", False),   # killed mid-run
                                ("home", "run-20260101_000002-ccc", True),            # logged online
                                ("sg", "offline-run-20260101_000003-ddd", True)):     # abroad
        record = pb.Record()
        record.run.run_id, record.run.run_group = folder[-3:], "llm-split"
        records = [record]
        if exits:
            done = pb.Record()
            done.exit.exit_code = 0
            records.append(done)
        path = tmp_path / site / folder / f"run-{folder[-3:]}.wandb"
        path.parent.mkdir(parents=True)
        wandb_offline.write_records(path, records)
        runs.append(wandb_sites.SiteRun(site, f"llm-split-{site}-x", wandb_offline.load_run(path), path.read_bytes()))
    plans = wandb_sites.plan_sync(config, runs, config.site("sg"))
    assert [(p.item.run.id, p.finished) for p in plans] == [("aaa", True), ("bbb", False)]
    assert all(p.metric_filter == ["loss", "eval/*"] for p in plans)       # W&B's cloud is abroad
    assert plans[0].staged.parts[-4:-1] == ("sg", "home", "offline-run-20260101_000000-aaa")


_CELL_RUN = """
import sys
{prelude}
from jupyter_split import tracking
with tracking.cell_run({{"run_id": "llm-split-sg-1", "site": "sg", "code": "x = 1", "run_dir": sys.argv[1]}}) as cell:
    ran = True
print("ran untracked:", ran and cell.run is None)
"""


@pytest.mark.parametrize("prelude, says", [
    ("sys.modules['wandb'] = None  # this site has no wandb installed", "wandb is not installed on site 'sg'"),
    ("", "W&B could not start on site 'sg'"),       # online, and no key anywhere
])
def test_a_wandb_cell_that_cannot_track_still_runs_and_says_why(tmp_path, prelude, says):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_MODE="online", WANDB_BASE_URL="http://127.0.0.1:9")
    done = subprocess.run([sys.executable, "-c", _CELL_RUN.format(prelude=prelude), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ran untracked: True" in done.stdout
    assert says in done.stderr and "This cell runs without a W&B run." in done.stderr


@pytest.mark.slow
def test_s3_checkpoint_is_checksummed_by_wandb_where_it_can_reach_the_store(s3, monkeypatch):
    url = s3.make_bucket("ckpt-" + secrets.token_hex(3)) + "/step-1"
    fs = s3.filesystem()
    fs.pipe_file(f"{url}/model.safetensors", b"weights" * 100)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    blind = tracking.build_artifact(url, _manifest())              # W&B's client has no credentials
    [entry] = blind.manifest.entries.values()
    assert blind.metadata["digest"] == "manifest" and entry.digest == tracking.manifest_sha256(_manifest())

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.key)                 # W&B's own settings for the store
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret)
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", s3.endpoint_url)
    native = tracking.build_artifact(url, _manifest())
    entry = native.manifest.entries["model.safetensors"]
    assert native.metadata["digest"] == "wandb" and entry.ref == url + "/model.safetensors" and entry.size == 700
    assert entry.digest == fs.info(f"{url}/model.safetensors")["ETag"].strip('"')


def test_a_wandb_cell_on_many_ranks_is_one_run_of_rank_0(tmp_path):
    import subprocess
    import sys

    code = ("import sys, wandb\nfrom jupyter_split import tracking\n"
            "with tracking.cell_run({'run_id': 'r', 'site': 'sg', 'code': '', 'run_dir': sys.argv[1]}) as cell:\n"
            "    wandb.log({'loss': 1.0})\n"
            "print(cell.run.settings.mode)\nwandb.teardown()")
    modes = []
    for rank in ("0", "1"):
        run_dir = tmp_path / rank
        run_dir.mkdir()
        env = {**os.environ, "RANK": rank, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
        done = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True,
                              env=env, timeout=120, check=True)
        modes.append(done.stdout.split()[-1])
        assert len(tracking.run_files(run_dir)) == (1 if rank == "0" else 0)
    assert modes == ["offline", "disabled"]
