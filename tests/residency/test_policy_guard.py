"""The border guard on copies and other transfers, declassification, the allowlist, and the verbs."""
from __future__ import annotations

import io
import json

import pytest

from jupyter_split import commands, policy
from jupyter_split.config import load_config


def run_verb(*argv: str, namespace: dict | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = commands.dispatch(list(argv), commands.Context(namespace=namespace, out=out, notebook=namespace is not None))
    return code, out.getvalue()


def test_resident_data_to_a_foreign_site_is_refused_with_a_message_that_says_everything(home):
    with pytest.raises(policy.ResidencyError) as info:
        policy.check_copy(f"{home}/pii/people.csv", f"file://{home}/sg-store/people.csv", [], 11, "people.csv")
    error = info.value
    assert isinstance(error, PermissionError)
    text = str(error)
    assert "'people.csv'" in text                                    # the item
    assert "label CN" in text and "policy.resident" in text          # its label and where it came from
    assert "site 'sg'" in text and "jurisdiction SG" in text         # the destination and its jurisdiction
    assert "%split declassify people.csv --reason" in text           # how to declassify
    assert "Nothing was sent" in text
    assert (error.item, error.labels, error.to_site, error.to_jurisdiction) == ("people.csv", {"CN"}, "sg", "SG")
    [record] = policy.audit_entries(decision="refused")
    assert record["from_site"] == "home" and record["to_site"] == "sg" and record["bytes"] == 11
    assert record["from_jurisdiction"] == "CN" and record["to_jurisdiction"] == "SG" and record["labels"] == ["CN"]
    assert record["user"] and record["host"] and record["time"]


def test_manifest_labels_refuse_and_the_home_jurisdiction_accepts(home):
    with pytest.raises(policy.ResidencyError, match="the manifest of"):
        policy.check_copy(f"{home}/home-store/ckpt", f"{home}/sg-store/ckpt", ["CN"], 10, "ckpt")
    assert policy.check_copy(f"{home}/home-store/ckpt", f"{home}/home-store/copy", ["CN"], 10, "ckpt") == {"CN"}
    assert policy.audit_entries(decision="allowed") == []  # nothing crossed a border: nothing to audit


def test_weights_flow_home_freely_and_are_audited(home):
    labels = policy.check_copy(f"{home}/sg-store/step-100", f"{home}/home-store/step-100", [], 1 << 20, "step-100")
    assert labels == set()
    [record] = policy.audit_entries()
    assert (record["decision"], record["from_site"], record["to_site"], record["reason"]) == \
        ("allowed", "sg", "home", "no residency label")


def test_a_labelled_copy_to_a_place_of_no_site_is_refused_as_unknown(home):
    with pytest.raises(policy.ResidencyError, match="(?s)jurisdiction unknown.*under no site's `storage`"):
        policy.check_copy(f"{home}/pii", "s3://somewhere/else", [], 1, "pii")


def test_a_folder_holding_resident_data_counts_unless_its_files_say_otherwise(home):
    with pytest.raises(policy.ResidencyError, match="may hold locations matching"):
        policy.check_copy(str(home), f"{home}/sg-store/all", [], 1, "everything")
    # with the file list the sync engine plans, only what is really sent decides
    assert policy.check_copy(str(home), f"{home}/sg-store/some", [], 1, "some", files=["work/out/a.bin"]) == set()
    with pytest.raises(policy.ResidencyError):
        policy.check_copy(str(home), f"{home}/sg-store/some", [], 1, "some", files=["work/a.bin", "pii/people.csv"])


def test_declassified_item_passes_and_the_log_shows_refusal_declassification_transfer(home):
    src, dest = f"{home}/pii/people.csv", f"{home}/sg-store/people.csv"
    with pytest.raises(policy.ResidencyError):
        policy.check_copy(src, dest, [], 11, "people.csv")
    with pytest.raises(ValueError, match="needs a reason"):
        policy.declassify(src, "  ")
    policy.declassify(src, "PIPL export approval 2026-17", user="dpo")
    assert policy.check_copy(src, dest, [], 11, "people.csv") == {"CN"}
    decisions = [(r["decision"], r.get("user")) for r in policy.audit_entries()]
    assert [d for d, _ in decisions] == ["refused", "declassified", "allowed"]
    assert decisions[1][1] == "dpo"
    allowed = policy.audit_entries(decision="allowed")[0]
    assert "declassified by dpo" in allowed["reason"] and "2026-17" in allowed["reason"]
    # the approval covers that file only: its folder (and so the other files) stay refused
    with pytest.raises(policy.ResidencyError):
        policy.check_copy(f"{home}/pii", f"{home}/sg-store/pii", [], 11, "pii")


def test_allow_export_passes_by_location_glob_or_item_name(home):
    (home / "approved" / "stats.csv").write_text("1\n")
    assert policy.check_copy(f"{home}/approved/stats.csv", f"{home}/sg-store/s.csv", ["CN"], 2, "stats") == {"CN"}
    assert policy.check_copy(f"{home}/home-store/x", f"{home}/sg-store/x", ["CN"], 2, "public-weights") == {"CN"}
    reasons = [r["reason"] for r in policy.audit_entries(decision="allowed")]
    assert reasons == [f"policy.allow_export lists 'file://{home}/approved/**'", "policy.allow_export lists 'public-*'"]


def test_check_transfer_guards_other_channels(home):
    with pytest.raises(policy.ResidencyError, match="wandb-artifact 'ckpt-a'.*jurisdiction US"):
        policy.check_transfer("ckpt-a", ["CN"], kind="wandb-artifact", dest="https://api.wandb.ai", to_jurisdiction="US")
    policy.check_transfer("ckpt-a", ["CN"], kind="wandb-artifact", dest="https://wandb.corp.cn", to_jurisdiction="cn")
    assert [r["decision"] for r in policy.audit_entries()] == ["refused"]


def test_passwords_in_urls_never_reach_the_log_or_the_message(home):
    with pytest.raises(policy.ResidencyError) as info:
        policy.check_copy(f"{home}/pii/people.csv", "sftp://bob:hunter2@sg.example/x", [], 1, "people.csv")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in load_config().audit_log_path().read_text()


def test_policy_verb_shows_policy_labels_and_checks_locations(home):
    code, out = run_verb("policy", f"{home}/pii/a.csv", f"{home}/sg-store/x")
    assert code == 0
    assert "jurisdiction CN" in out and f"file://{home}/pii/**" in out and "public-*" in out
    assert f"{home}/pii/a.csv: CN" in out and f"{home}/sg-store/x: not labelled" in out
    from jupyter_split import ckpt

    ckpt.save({"w": __import__("torch").ones(1)}, f"{home}/home-store/runs/emb", labels=["CN"])
    assert f"labelled checkpoint on home: {home}/home-store/runs/emb: CN" in run_verb("policy")[1]
    tensor = policy.label(__import__("torch").zeros(2), "CN")
    code, out = run_verb("policy", namespace={"weights": tensor, "plain": 3})
    assert "labelled variables: 1" in out and "weights: CN from policy.label()" in out and "plain" not in out


def test_declassify_and_audit_verbs(home):
    src = f"{home}/pii/people.csv"
    with pytest.raises(policy.ResidencyError):
        policy.check_copy(src, f"{home}/sg-store/p.csv", [], 11, "people.csv")
    code, out = run_verb("declassify", src, "--reason", "ticket 42")
    assert code == 0 and "declassified item" in out and "ticket 42" in out
    assert run_verb("declassify", src)[0] == 2  # --reason is required
    policy.check_copy(src, f"{home}/sg-store/p.csv", [], 11, "people.csv")
    policy.check_copy(f"{home}/sg-store/w", f"{home}/home-store/w", [], 5, "w")

    code, out = run_verb("audit", "--decision", "refused")
    assert code == 0 and out.count("refused") == 1 and "home(CN) -> sg(SG)" in out
    code, out = run_verb("audit", "--site", "sg", "--json")
    assert len(out.splitlines()) == 3  # refused, allowed (declassified), allowed (weights home)
    assert run_verb("audit", "--since", "2999-01-01")[1].count("\n") == 1  # the header only
    assert len(run_verb("audit", "--since", "2000-01-01")[1].splitlines()) == 5
    assert run_verb("audit", "--since", "last tuesday")[0] == 2
    assert run_verb("audit", "--decision", "maybe")[0] == 2


def test_declassify_verb_in_a_notebook_approves_the_variable_itself(home):
    import torch

    batch = policy.label(torch.ones(3), "CN")
    namespace = {"batch": batch}
    with pytest.raises(policy.ResidencyError):
        policy.check_objects(namespace, "sg")
    code, out = run_verb("declassify", "batch", "--reason", "aggregate only", namespace=namespace)
    assert code == 0 and "declassified variable 'batch' (CN)" in out
    policy.check_objects(namespace, "sg")
    other = policy.label(torch.ones(3), "CN")  # another object of the same name is not approved
    with pytest.raises(policy.ResidencyError):
        policy.check_objects({"batch": other}, "sg")


def test_a_refusal_survives_pickling_whole(home):
    import pickle

    with pytest.raises(policy.ResidencyError) as info:
        policy.check_copy(f"{home}/pii", f"{home}/sg-store/pii", [], 1, "pii")
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.to_jurisdiction == "SG" and again.labels == {"CN"}


def test_declassifications_reach_a_runner_whose_register_is_elsewhere(home, tmp_path, monkeypatch):
    src, dest = f"{home}/pii/people.csv", f"{home}/sg-store/people.csv"
    policy.declassify(src, "approval 9", user="dpo")
    env = policy.runner_env(load_config())
    monkeypatch.setenv("JUPYTER_SPLIT_DATA", str(tmp_path / "other-machine"))  # its own, empty register
    with pytest.raises(policy.ResidencyError):
        policy.check_copy(src, dest, [], 11, "people.csv")
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # what the core puts in each cell's request
    policy.check_copy(src, dest, [], 11, "people.csv")
    assert "declassified by dpo" in policy.audit_entries(decision="allowed")[0]["reason"]


def test_a_declassified_url_with_a_password_is_stored_without_it(home):
    url = "sftp://bob:hunter2@sg.example/data/pii/x.csv"
    policy.declassify(url, "approval 3")
    assert "hunter2" not in (load_config().audit_log_path().parent / "declassified.jsonl").read_text()
    from jupyter_split.residency.guard import approval_for

    assert approval_for([url], load_config()).startswith("declassified by")


def test_the_runner_environment_keeps_the_newest_declassifications_within_its_limit(home):
    for n in range(400):
        policy.declassify(f"s3://bucket/exports/item-{n:04d}", "approval " + "x" * 150)
    [value] = policy.runner_env(load_config()).values()
    records = json.loads(value)
    assert len(value) <= 64 * 1024 and records[-1]["item"] == "s3://bucket/exports/item-0399"
    assert 100 < len(records) < 400
