"""Residency end to end: real runners, the sync engine to a real S3 server and over real SFTP,
checkpoints with their manifests and safetensors metadata, and a real notebook kernel."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from jupyter_split import ckpt, core, policy, sync
from jupyter_split.core.outcome import CellOptions
from jupyter_split.sync.manifest import read_manifest
from tests.fixtures.core import text, tracebacks
from tests.fixtures.policy import policy_config, sftp_options, toml_table

pytestmark = pytest.mark.slow


@pytest.fixture
def bucket() -> str:
    return f"sg-{uuid.uuid4().hex[:10]}"  # the S3 server lives for the session: a bucket per test


@pytest.fixture
def world(split_home: Path, s3, sshd, bucket) -> Path:
    """Home (CN, local storage) and two sites abroad (SG): one on the S3 server, one over SFTP."""
    root = split_home
    s3.make_bucket(bucket)
    policy_config(
        root,
        sg=f'storage = "s3://{bucket}/runs"\nstorage_options = {toml_table(s3.storage_options)}',
        more_sites=f"""
[sites.sgsftp]
jurisdiction = "SG"
storage = "ssh://127.0.0.1:{sshd.port}{root}/sftp-store"
storage_options = {toml_table(sftp_options(sshd))}
""")
    (root / "pii" / "patients.csv").write_text("name,phone\nZhang San,13800000000\nLi Si,13900000000\n")
    return root


def bucket_objects(s3, bucket: str) -> list[str]:
    return s3.filesystem().find(bucket)


def test_a_refused_push_leaves_zero_bytes_on_the_s3_server(world, s3, bucket):
    ckpt.save({"w": torch.ones(8)}, f"{world}/home-store/labelled", labels=["CN"])
    with pytest.raises(policy.ResidencyError, match="(?s)'sg'.*jurisdiction SG.*label CN.*the manifest of"):
        sync.push("home:labelled", "sg:")
    with pytest.raises(policy.ResidencyError, match="policy.resident"):
        sync.push(str(world / "pii"), "sg:raw")
    assert bucket_objects(s3, bucket) == []
    assert [r["decision"] for r in policy.audit_entries(site="sg")] == ["refused", "refused"]


def test_a_refused_push_leaves_zero_bytes_over_sftp(world, sshd):
    ckpt.save({"w": torch.ones(8)}, f"{world}/home-store/labelled", labels=["CN"])
    with pytest.raises(policy.ResidencyError, match="site 'sgsftp'"):
        sync.push("home:labelled", "sgsftp:")
    with pytest.raises(policy.ResidencyError):
        sync.push(str(world / "pii" / "patients.csv"), "sgsftp:patients.csv")
    assert not (world / "sftp-store").exists()  # the sshd serves this machine's disk: nothing there at all
    [refused, _] = policy.audit_entries(decision="refused")
    assert refused["to_site"] == "sgsftp" and refused["to_jurisdiction"] == "SG"


def test_taint_flows_from_a_resident_read_to_the_checkpoint_and_stops_its_push(world, s3, bucket):
    split = core.Split()
    url = f"file://{world}/home-store/emb"
    cell = f"""
import torch
from jupyter_split import ckpt, sync
rows = open({str(world / 'pii' / 'patients.csv')!r}).read().splitlines()[1:]
emb = {{"table": torch.randn(len(rows), 4)}}
open({str(world / 'work' / 'lengths.csv')!r}, "w").write("\\n".join(str(len(r)) for r in rows))
manifest = ckpt.save(emb, {url!r})
print("saved", manifest.labels)
sync.push({url!r}, "sg:emb")
"""
    events: list[dict] = []
    outcome = split.execute(cell, CellOptions(site="home"), {}, events.append)
    shown = "".join(e.get("text", "") for e in events if e["type"] == "stream")
    assert "saved ['CN']" in shown
    assert outcome.state == "failed" and "ResidencyError" in outcome.reason
    assert "patients.csv" in outcome.reason  # the refusal says which read labelled the run

    manifest = read_manifest(__import__("fsspec").filesystem("file"), f"{world}/home-store/emb")
    assert manifest.labels == ["CN"]
    shards = [f.path for f in manifest.files if f.path.endswith(".safetensors")]
    assert shards
    for shard in shards:
        with safe_open(str(world / "home-store" / "emb" / shard), "pt") as handle:
            assert handle.metadata()["labels"] == "CN"

    with pytest.raises(policy.ResidencyError):  # and from the notebook, by the manifest's label
        sync.push("home:emb", "sg:emb")
    with pytest.raises(policy.ResidencyError, match="lengths.csv was written by run"):  # a plain file it wrote
        sync.push(str(world / "work" / "lengths.csv"), "sg:lengths.csv")
    assert bucket_objects(s3, bucket) == []
    refusals = policy.audit_entries(decision="refused")
    assert len(refusals) == 3 and refusals[0]["run_id"] == outcome.run_id


def test_in_variables_refused_abroad_before_any_run_and_allowed_home(world):
    split = core.Split()
    features = policy.label(torch.arange(4.0), "CN")
    namespace = {"features": features}
    with pytest.raises(policy.ResidencyError, match="variable 'features'"):
        split.execute("print(features.sum())", CellOptions(site="sg", inputs=["features"]), namespace, print)
    assert split.list_runs(site="sg") == []  # refused before a runner started or a byte was pickled
    events: list[dict] = []
    outcome = split.execute("print(float(features.sum()))", CellOptions(site="home", inputs=["features"]),
                            namespace, events.append)
    assert outcome.state == "succeeded"
    assert "6.0" in "".join(e.get("text", "") for e in events)


def test_weights_trained_abroad_come_home_freely(world, s3, bucket):
    split = core.Split()
    cell = """
import torch
from jupyter_split import ckpt
from jupyter_split.config import load_config
site = load_config().site("sg")
ckpt.save({"w": torch.full((3,), 2.0)}, site.storage + "/weights", storage_options=site.storage_options)
"""
    assert split.execute(cell, CellOptions(site="sg"), {}, lambda e: None).state == "succeeded"
    report = sync.pull("sg:weights")
    assert report.files_sent >= 1
    assert ckpt.load(f"{world}/home-store/weights", device="cpu")["w"].tolist() == [2.0, 2.0, 2.0]
    [record] = policy.audit_entries()
    assert (record["decision"], record["from_site"], record["to_site"], record["labels"]) == ("allowed", "sg", "home", [])


def test_a_declassified_checkpoint_passes_and_the_log_tells_the_story(world, s3, bucket):
    url = f"file://{world}/home-store/approved"
    ckpt.save({"w": torch.ones(2)}, url, labels=["CN"])
    with pytest.raises(policy.ResidencyError):
        sync.push("home:approved", "sg:")
    assert bucket_objects(s3, bucket) == []
    policy.declassify(url, "export approval PIPL-2026-031", user="dpo")
    sync.push("home:approved", "sg:")
    assert any(p.endswith("manifest.json") for p in bucket_objects(s3, bucket))
    story = [(r["decision"], r["kind"]) for r in policy.audit_entries()]
    assert story == [("refused", "copy"), ("declassified", "declassify"), ("allowed", "copy")]
    assert "PIPL-2026-031" in policy.audit_entries(decision="allowed")[0]["reason"]


def test_the_notebook_flow_in_a_real_kernel(world, kernel):
    pii = str(world / "pii" / "patients.csv")
    kernel.ok(f"%%on home --out counts\nimport torch\nrows = open({pii!r}).read().splitlines()\n"
              "counts = torch.tensor([len(r) for r in rows], dtype=torch.float32)")
    outputs, reply = kernel.run("%%remote_gpu --in counts\nprint(counts.mean())")
    assert reply["status"] == "error"
    shown = tracebacks(outputs) + text(outputs)
    assert "variable 'counts'" in shown and "label CN" in shown and "%split declassify counts" in shown
    policy_text = text(kernel.ok("%split policy"))
    assert "counts: CN from run" in policy_text and "patients.csv" in policy_text
    kernel.ok('%split declassify counts --reason "aggregate lengths, approval 12"')
    assert "tensor(" in text(kernel.ok("%%remote_gpu --in counts\nprint(counts.mean())"))
    audit = text(kernel.ok("%split audit --decision refused"))
    assert "counts" in audit and "home(CN) -> sg(SG)" in audit


def test_out_variables_from_abroad_are_audited_and_foreign_labels_stay_abroad(world):
    split = core.Split()
    ns: dict = {}
    cell = "import torch\nweights = torch.ones(2)\nlocal_rows = policy.label(torch.zeros(2), 'SG')"
    assert split.execute(f"from jupyter_split import policy\n{cell}", CellOptions(site="sg", outputs=["weights"]),
                         ns, lambda e: None).state == "succeeded"
    assert ns["weights"].tolist() == [1.0, 1.0]
    outcome = split.execute("local_rows", CellOptions(site="sg", outputs=["local_rows"]), ns, lambda e: None)
    assert outcome.state == "failed" and "label SG" in outcome.reason and "local_rows" not in ns
    records = [(r["item"], r["decision"], r["from_site"], r["to_site"]) for r in policy.audit_entries()]
    assert records == [("weights", "allowed", "sg", "home"), ("local_rows", "refused", "sg", "home")]
