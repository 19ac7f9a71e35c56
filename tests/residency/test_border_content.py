"""The content scan at the border, through the faces that carry bytes that are no resident file:
files of a copy, `--in` variables' pickled bytes, and a home W&B run synced to a server abroad.

The personal data here was typed in, not read from a resident location: no label or taint
can know it, so only the scan stands between it and the border. Every refusal is audited
with the kind, a masked form and a sha256, never the value.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_split import policy, sync
from jupyter_split.config import load_config

from tests.fixtures.core import text
from tests.tracking.test_sites import _cli, experiment  # noqa: F401 - the W&B fixture, shared

PRC_ID = "11010519491231002X"  # GB 11643's own worked example: its check digit is X
MOBILE = "13812345678"


def _audit_text() -> str:
    return load_config().audit_log_path().read_text()


def test_a_file_holding_personal_data_is_refused_abroad_and_the_log_keeps_no_value(home: Path):
    out = home / "out"
    out.mkdir()
    (out / "weights.bin").write_bytes(b"\x00" * 4096)
    (out / "eval.csv").write_text(f"case,contact\n1,{MOBILE}\n2,id {PRC_ID}\n")
    with pytest.raises(policy.ResidencyError) as refused:
        sync.push(str(out), "sg:eval", progress=False)
    message = str(refused.value)
    assert "eval.csv: the content scan found a mainland China mobile number" in message
    assert "a PRC resident ID number" in message and MOBILE not in message and PRC_ID not in message
    assert not (home / "sg-store" / "eval").exists()
    [entry] = policy.audit_entries(decision="refused")
    kinds = {f["kind"] for f in entry["findings"]}
    assert kinds == {"cn_mobile", "prc_id"} and all(len(f["sha256"]) == 64 for f in entry["findings"])
    assert MOBILE not in _audit_text() and PRC_ID not in _audit_text()
    # the same data going home is not scanned: nothing crosses
    assert sync.push(str(out), "home:eval", progress=False).files_sent == 2


def test_a_clean_folder_goes_abroad_with_the_scan_on(home: Path):
    out = home / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "loss": 1 / (i + 1), "ts": 1733000000000 + i})
                                               + "\n" for i in range(500)))
    assert sync.push(str(out), "sg:metrics", progress=False).files_sent == 1


def test_a_resync_abroad_scans_only_the_files_it_sends(home: Path, monkeypatch):
    """A file the destination holds already (skipped) sends nothing now: it is not read for a scan again."""
    from jupyter_split.residency import border

    out = home / "out"
    out.mkdir()
    for i in range(4):
        (out / f"part-{i}.csv").write_text("step,loss\n" + "".join(f"{j},{1 / (j + 1)}\n" for j in range(200)))
    assert sync.push(str(out), "sg:parts", progress=False).files_sent == 4
    scanned: list[str] = []
    real = border._scan
    monkeypatch.setattr(border, "_scan", lambda source, files, *rest: scanned.extend(f.rel for f in files)
                        or real(source, files, *rest))
    (out / "part-2.csv").write_text(f"step,contact\n1,{MOBILE}\n")  # changed: sent, so scanned, so refused
    with pytest.raises(policy.ResidencyError, match="part-2.csv: the content scan found a mainland China mobile"):
        sync.push(str(out), "sg:parts", progress=False)
    assert scanned == ["part-2.csv"]


@pytest.mark.slow
def test_in_variables_holding_personal_data_are_refused_by_name(home: Path, kernel):
    kernel.ok(f"notes = 'call {MOBILE} about the order'\nclean = list(range(10))\n"
              f"frame = {{'id': ['{PRC_ID}'], 'score': [0.5]}}")
    outputs, reply = kernel.run("%%on sg --in notes,clean,frame\nprint(len(clean))")
    shown = text(outputs) + json.dumps(reply)
    assert reply["status"] == "error" and "Residency: refused to send variable 'notes'" in shown, shown
    assert "'notes'" in shown and "'frame'" in shown and "'clean'" not in shown
    assert MOBILE not in shown and PRC_ID not in shown
    refused = policy.audit_entries(decision="refused")
    assert sorted(e["item"] for e in refused) == ["frame", "notes"] and {e["kind"] for e in refused} == {"variable"}
    assert MOBILE not in _audit_text()
    assert "10" in text(kernel.ok("%%on sg --in clean\nprint(len(clean))"))  # the clean one goes
    kernel.ok("%split declassify notes --reason 'the customer asked for it, ticket 7'")
    outputs = kernel.ok("%%on sg --in notes\nprint(notes.split()[0])")
    assert "call" in text(outputs)


@pytest.mark.slow
def test_a_home_wandb_run_holding_personal_data_is_not_synced_abroad(experiment, kernel):  # noqa: F811
    kernel.ok("%%on home --wandb --name contact\nimport wandb\n"
              f"wandb.config.update({{'escalation_contact': '{MOBILE}'}})\nwandb.log({{'loss': 0.1}})")
    kernel.ok("%%on home --wandb --name clean\nimport wandb\nwandb.log({'loss': 0.2})")
    done = _cli("wandb", "sync", "--to", "sg")
    assert done.returncode == 1
    assert "not synced to https://api.wandb.ai (US)" in done.stdout and "mainland China mobile number" in done.stdout
    assert done.stdout.count("wandb sync to https://api.wandb.ai (US) failed") == 1   # the clean run was tried
    [entry] = policy.audit_entries(decision="refused")
    assert entry["kind"] == "wandb-run" and entry["to_jurisdiction"] == "US"
    assert MOBILE not in _audit_text() and MOBILE not in done.stdout


def test_a_checkpoint_whose_plain_values_hold_personal_data_is_not_saved_abroad(home: Path):
    import torch

    from jupyter_split import ckpt

    state = {"w": torch.arange(12, dtype=torch.int64) * 1_000_000_007, "meta": {"owner": f"tel {MOBILE}", "step": 3}}
    with pytest.raises(policy.ResidencyError, match="mainland China mobile number"):
        ckpt.save(state, "sg:ckpts/with-meta")
    assert not (home / "sg-store" / "ckpts" / "with-meta").exists()
    [entry] = policy.audit_entries(decision="refused")
    assert entry["kind"] == "checkpoint" and MOBILE not in _audit_text()
    ckpt.save(state, "home:ckpts/with-meta")                   # at home it may stay
    state["meta"]["owner"] = "the vision team"
    assert ckpt.save(state, "sg:ckpts/clean").files           # large ints, as binary numbers, are no digits


def test_a_checkpoint_holding_text_in_a_tensor_of_bytes_is_not_saved_abroad(home: Path):
    import torch

    from jupyter_split import ckpt

    text = f"case,contact\n1,{MOBILE}\n".encode()
    state = {"w": torch.zeros(8), "cache": torch.frombuffer(bytearray(text), dtype=torch.uint8)}
    with pytest.raises(policy.ResidencyError, match="mainland China mobile number"):
        ckpt.save(state, "sg:ckpts/text")
    assert not (home / "sg-store" / "ckpts" / "text").exists()
    assert MOBILE not in _audit_text()
    # the same bytes as float weights are numbers, not text: they go
    text += b" " * (-len(text) % 4)
    assert ckpt.save({"w": torch.frombuffer(bytearray(text), dtype=torch.float32)}, "sg:ckpts/floats").files
    # and a copy of the refused checkpoint, saved at home, is refused abroad too (its shard is scanned)
    ckpt.save(state, "home:ckpts/text")
    with pytest.raises(policy.ResidencyError, match="mainland China mobile number"):
        sync.copy(str(home / "home-store" / "ckpts" / "text"), "sg:ckpts/text", progress=False)
