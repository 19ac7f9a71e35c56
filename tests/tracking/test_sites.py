"""One experiment across two sites in W&B, end to end through a real kernel (WANDB_MODE=offline).

Pretraining abroad, fine-tuning at home on a pulled checkpoint and resident data,
inference at home; then the runs are read back from their `.wandb` files, synced
under the policy (refused artifact, allowlisted metrics) and scanned for the key.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_split import core, tracking
from jupyter_split.tracking import offline as wandb_offline, sites as wandb_sites
from jupyter_split.core.outcome import CellOptions
from jupyter_split.executors.local import LocalExecutor
from jupyter_split.policy import audit_entries
from jupyter_split.sync.manifest import Manifest
from tests.fixtures.core import text, write_config

pytestmark = pytest.mark.slow

API_KEY = "wbk-" + secrets.token_hex(20)


@pytest.fixture
def experiment(split_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Two local sites: `sg` (SG, W&B's cloud) and `home` (CN, a self-hosted server); a key in the environment."""
    stores = {name: (split_home / "store" / name).as_uri() for name in ("sg", "home")}
    pii = split_home / "pii"
    pii.mkdir()
    (pii / "users.csv").write_text("id,name\n1,Li Wei\n2,Wang Fang\n")
    write_config(split_home, f"""
[experiment]
name = "llm-split"
home = "home"
default_remote = "sg"
[sites.sg]
executor = "local"
jurisdiction = "SG"
accelerator = "cpu"
storage = "{stores['sg']}"
wandb = {{ mode = "offline", project = "llm" }}
[sites.home]
executor = "local"
jurisdiction = "CN"
accelerator = "cpu"
storage = "{stores['home']}"
wandb = {{ mode = "offline", project = "llm", base_url = "https://wandb.corp.example" }}
[policy]
resident = ["{pii.as_uri()}/**"]
metrics_abroad = ["loss", "eval/*"]
""")
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    return {"sg": stores["sg"], "home": stores["home"], "pii": str(pii / "users.csv")}


PRETRAIN = """\
import torch, wandb
from jupyter_split import ckpt
torch.manual_seed(0)
model = torch.nn.Linear(4, 2)
for step in range(3):
    wandb.log({{"loss": 1.0 / (step + 1)}})
url = "{sg}/pretrain-1"
manifest = ckpt.save(model.state_dict(), url)   # logs the checkpoint as an artifact of this run
print("saved", url)"""

FINETUNE = """\
import wandb
from jupyter_split import ckpt, sync
report = sync.copy("{sg}/pretrain-1", "{home}/pulled-1")   # the pull records its use
state = ckpt.load("{home}/pulled-1")
rows = open("{pii}").read().splitlines()[1:]
wandb.log({{"loss": 0.2, "eval/acc": 0.9, "pii_rows": len(rows)}})
manifest = ckpt.save(state, "{home}/ft-1")
print("labels", manifest.labels)"""

INFERENCE = """\
import wandb
from jupyter_split import ckpt
state = ckpt.load("{home}/ft-1")
wandb.log({{"eval/acc": 0.91}})"""

PLAIN = """\
import wandb
run = wandb.init()
run.log({"plain_metric": 1})
run.finish()"""


def _run_cells(kernel, paths: dict[str, str]) -> None:
    outputs = kernel.ok("%%on sg --wandb --name pretrain\n" + PRETRAIN.format(**paths))
    assert "saved" in text(outputs, "stdout")
    outputs = kernel.ok("%%on home --wandb --name finetune\n" + FINETUNE.format(**paths))
    assert "labels ['CN']" in text(outputs, "stdout"), outputs   # read resident data: the checkpoint is labelled
    kernel.ok("%%on home --wandb --name inference\n" + INFERENCE.format(**paths))
    kernel.ok("%%on home --name plain\n" + PLAIN)


def test_one_experiment_across_two_sites(experiment, kernel, split_home):
    _run_cells(kernel, experiment)
    runs = {r.run.job_type: r for r in wandb_sites.experiment_runs(core.get_split())}
    assert set(runs) == {"pretrain", "finetune", "inference", "plain"}
    for item in runs.values():
        run = item.run
        assert (run.group, run.project, run.offline, run.state) == ("llm-split", "llm", True, "finished")
        site = "sg" if run.job_type == "pretrain" else "home"
        assert item.site == site and run.tags == [f"site:{site}", f"jurisdiction:{'SG' if site == 'sg' else 'CN'}", "accelerator:cpu"]
        assert run.name == item.split_run

    pretrain = runs["pretrain"].run
    split_config = pretrain.config["split"]
    assert split_config["site"] == "sg" and split_config["run_id"] == runs["pretrain"].split_run
    assert split_config["device"] == "cpu" and split_config["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    sent = json.loads(Path(core.get_split().index.get(runs["pretrain"].split_run).run_dir, "request.json").read_text())
    assert sent["code"].strip() == PRETRAIN.format(**experiment)
    assert split_config["code_sha256"] == hashlib.sha256(sent["code"].encode()).hexdigest()
    assert [row["loss"] for row in pretrain.history] == [1.0, 0.5, pytest.approx(1 / 3)]
    [artifact] = pretrain.artifacts
    sg_url = experiment["sg"] + "/pretrain-1"
    assert artifact["name"] == "ckpt-pretrain-1" and artifact["metadata"]["url"] == sg_url
    assert artifact["metadata"]["labels"] == [] and artifact["metadata"]["producer_site"] == "sg"
    assert {e["ref"] for e in artifact["entries"]} >= {sg_url + "/manifest.json"}   # by reference, W&B-checksummed
    sg_manifest = _manifest(sg_url)
    assert artifact["metadata"]["manifest_sha256"] == tracking.manifest_sha256(sg_manifest)

    finetune = runs["finetune"].run
    pulled = experiment["home"] + "/pulled-1"
    used = {u["url"]: u for u in finetune.config[tracking.USED_KEY]}
    assert set(used) == {sg_url, pulled}                       # pulled from abroad, then loaded at home
    for entry in used.values():
        assert entry["sha256"] == tracking.manifest_sha256(sg_manifest)   # the same checkpoint, both copies
        assert entry["producer_site"] == "sg" and entry["producer_run"] == sg_manifest.run_id
    assert finetune.metrics() == {"loss": 0.2, "eval/acc": 0.9, "pii_rows": 2}
    [ft_artifact] = finetune.artifacts
    assert ft_artifact["metadata"]["labels"] == ["CN"]
    assert ft_artifact["metadata"]["parents"] == [pulled]
    ft_manifest = _manifest(experiment["home"] + "/ft-1")
    assert ft_manifest.parents == [pulled] and ft_manifest.labels == ["CN"]
    assert _manifest(pulled).site == "sg"                     # the pulled copy still names its producer

    inference = runs["inference"].run
    assert inference.history[0]["eval/acc"] == 0.91
    assert [u["url"] for u in inference.config[tracking.USED_KEY]] == [experiment["home"] + "/ft-1"]
    assert runs["plain"].run.config == {} and runs["plain"].run.metrics() == {"plain_metric": 1}

    listing = text(kernel.ok("%split wandb"))
    assert "4 run(s)" in listing and all(f" {r.run.id} " in listing for r in runs.values())
    as_json = _cli("wandb", "--site", "sg", "--json")
    [only] = json.loads(as_json.stdout)
    assert only["job_type"] == "pretrain" and [row["loss"] for row in only["history"]][:2] == [1.0, 0.5]
    assert only["config"]["split"]["site"] == "sg" and only["artifacts"][0]["name"] == "ckpt-pretrain-1"

    _the_sidebars_rows_read_a_wandb_file_again_only_when_it_changed(runs)
    _sync_abroad_keeps_back_what_the_policy_says(runs)
    _sync_to_the_home_server_keeps_everything(runs)
    _no_key_in_any_file(split_home)


def _the_sidebars_rows_read_a_wandb_file_again_only_when_it_changed(runs: dict) -> None:
    """The sidebar polls GET /wandb every few seconds: an unchanged poll stats each W&B file and reads none."""
    split = core.get_split()
    config = split.config
    expected = sorted((item.row(config) for item in runs.values()), key=lambda row: row["id"])
    read: list[str] = []
    original = LocalExecutor.read_file

    async def counted(self, path, offset=0, size=None):
        read.append(path)
        return await original(self, path, offset, size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalExecutor, "read_file", counted)
        assert sorted(wandb_sites.experiment_rows(split), key=lambda row: row["id"]) == expected
        first = len(read)
        assert sorted(wandb_sites.experiment_rows(split), key=lambda row: row["id"]) == expected
        assert read[first:] == [], "an unchanged poll read a file"
        changed = runs["plain"].run.path
        os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert sorted(wandb_sites.experiment_rows(split), key=lambda row: row["id"]) == expected
        assert read[first:] == [str(changed)], "only the file that changed is read again"


def _manifest(url: str) -> Manifest:
    return Manifest.from_json(Path(url.removeprefix("file://"), "manifest.json").read_text())


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_API_KEY")}  # no key: wandb sync stops at once
    return subprocess.run([sys.executable, "-m", "jupyter_split.cli", *argv], env=env, capture_output=True, text=True, timeout=240)


def _staged(target: str) -> dict[str, Path]:
    """The staged run files for `target`'s server, by W&B run id."""
    files = wandb_offline.find_run_files(wandb_sites.staging_dir() / target)
    return {p.parent.name.rsplit("-", 1)[-1]: p for p in files}


def _sync_abroad_keeps_back_what_the_policy_says(runs: dict) -> None:
    dry = _cli("wandb", "sync", "--to", "sg", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would sync to https://api.wandb.ai (US)") == 3        # the three home runs
    assert "ckpt-ft-1 carries labels ['CN']" in dry.stdout
    assert not [e for e in audit_entries(decision="refused") if e["kind"] == "wandb-artifact"]

    done = _cli("wandb", "sync", "--to", "sg")
    assert done.returncode == 1                                  # no key here: wandb sync itself fails, loudly
    assert "wandb sync to https://api.wandb.ai (US) failed" in done.stdout and "nothing was lost" in done.stdout
    assert "artifact kept back: ckpt-ft-1" in done.stdout
    [refused] = [e for e in audit_entries(decision="refused") if e["kind"] == "wandb-artifact"]
    assert refused["item"] == "ckpt-ft-1" and refused["to_jurisdiction"] == "US" and refused["labels"] == ["CN"]

    staged = _staged("sg")
    finetune = wandb_offline.load_run(staged[runs["finetune"].run.id])
    assert finetune.artifacts == [] and set(finetune.metrics()) == {"loss", "eval/acc"}
    assert finetune.config[tracking.USED_KEY][0]["url"].endswith("/pretrain-1")
    kinds = {r.WhichOneof("record_type") for r in wandb_offline.read_records(staged[runs["finetune"].run.id])}
    assert not kinds & {"output", "output_raw", "files"}
    assert runs["pretrain"].run.id not in staged                 # runs abroad are not home runs
    assert wandb_offline.load_run(staged[runs["plain"].run.id]).metrics() == {}   # plain_metric is not allowlisted


def _no_key_in_any_file(root: Path) -> None:
    needle = API_KEY.encode()
    scanned = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            scanned += 1
            assert needle not in path.read_bytes(), f"the W&B key was written to {path}"
    assert scanned > 20


def _sync_to_the_home_server_keeps_everything(runs: dict) -> None:
    dry = _cli("wandb", "sync", "--dry-run")
    assert dry.stdout.count("would sync to https://wandb.corp.example (CN)") == 3
    assert "policy.metrics_abroad" not in dry.stdout
    refused_before = len(audit_entries(decision="refused"))
    done = _cli("wandb", "sync")
    assert done.returncode == 1 and "kept back" not in done.stdout
    assert len(audit_entries(decision="refused")) == refused_before
    finetune = wandb_offline.load_run(_staged("home")[runs["finetune"].run.id])
    assert set(finetune.metrics()) == {"loss", "eval/acc", "pii_rows"}
    [artifact] = finetune.artifacts
    assert artifact["name"] == "ckpt-ft-1" and artifact["metadata"]["labels"] == ["CN"]


def test_a_wandb_cell_on_two_ranks_is_one_run(split_home):
    events: list[dict] = []
    cell = "import os, wandb\nwandb.log({'rank_seen': int(os.environ['RANK'])})\nprint('rank', os.environ['RANK'])"
    outcome = core.get_split().execute(cell, CellOptions(site="abroad", name="ddp", wandb=True, gpus=2), {}, events.append)
    assert outcome.state == "succeeded", outcome
    [item] = wandb_sites.experiment_runs(core.get_split())
    assert item.run.job_type == "ddp" and item.run.metrics() == {"rank_seen": 0}
