"""Taint inside a process: an audit hook and fsspec reads label the run that touched resident data.

Each case runs in a fresh interpreter: audit hooks cannot be removed, so the test
process itself never installs one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jupyter_split import policy
from tests.fixtures.policy import policy_config


def tracked(code: str, **start: str) -> dict:
    """Run `code` in a new interpreter that tracks taint; returns the run's label origins."""
    args = ", ".join(f"{k}={v!r}" for k, v in start.items())
    script = (
        "import json, os\nfrom jupyter_split import policy\n"
        f"policy.start_taint_tracking({args})\n" + textwrap.dedent(code)
        + "\nprint('LABELS=' + json.dumps(policy.run_label_origins()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = [l for l in done.stdout.splitlines() if l.startswith("LABELS=")][-1]
    return json.loads(line.removeprefix("LABELS="))


def test_reading_a_resident_file_labels_the_run_and_says_what_was_read(home):  # noqa: F811
    labels = tracked(f"open({str(home / 'pii' / 'people.csv')!r}).read()")
    assert list(labels) == ["CN"]
    assert "people.csv" in labels["CN"] and "policy.resident" in labels["CN"]


def test_writing_into_a_resident_folder_or_reading_elsewhere_does_not(home):  # noqa: F811
    assert tracked(f"""
        open({str(home / 'pii' / 'new.csv')!r}, 'w').write('x')
        fd = os.open({str(home / 'pii' / 'raw.bin')!r}, os.O_WRONLY | os.O_CREAT)
        os.close(fd)
        open({str(home / 'sg-store' / 'x.txt')!r}, 'w').write('y')
        open({str(home / 'sg-store' / 'x.txt')!r}).read()
    """) == {}


def test_listing_links_and_relative_detours_are_seen(home):  # noqa: F811
    (home / "work" / "door").symlink_to(home / "pii")
    assert list(tracked(f"os.listdir({str(home / 'pii')!r})")) == ["CN"]
    assert list(tracked("open('door/people.csv', 'rb').read()")) == ["CN"]
    assert list(tracked("open('../sg-store/../pii/./people.csv').read()")) == ["CN"]
    assert list(tracked(f"os.open({str(home / 'pii' / 'people.csv')!r}, os.O_RDONLY)")) == ["CN"]


def test_fsspec_reads_of_a_resident_store_are_seen(home):  # noqa: F811
    policy_config(home, resident=["memory://pii/**"])
    labels = tracked("""
        import fsspec
        fs = fsspec.filesystem("memory")   # a filesystem class imported after tracking began
        fs.pipe("memory://pii/people.csv", b"name\\n")
        fs.pipe("memory://public/readme", b"hi\\n")
        fs.cat("memory://public/readme")
        assert policy.run_labels() == set(), "a write or another read labelled the run"
        with fsspec.open("memory://pii/people.csv", "rb") as f:
            f.read()
    """)
    assert list(labels) == ["CN"] and "memory:///pii/people.csv" in labels["CN"]


def test_a_tainted_run_may_not_push_even_unlabelled_files_abroad(home):  # noqa: F811
    (home / "work" / "out" / "summary.txt").write_text("derived\n")
    summary, dest = str(home / "work" / "out" / "summary.txt"), str(home / "sg-store" / "summary.txt")
    clean = tracked(f"policy.check_copy({summary!r}, {dest!r}, [], 8, 'summary')")
    assert clean == {}
    labels = tracked(f"""
        open({str(home / 'pii' / 'people.csv')!r}).read()
        try:
            policy.check_copy({summary!r}, {dest!r}, [], 8, 'summary')
            raise SystemExit('a tainted push went through')
        except policy.ResidencyError as exc:
            assert 'people.csv' in str(exc), str(exc)
    """, run_id="r-test")
    assert "run r-test read" in labels["CN"]
    assert [r["decision"] for r in policy.audit_entries()] == ["allowed", "refused"]


def test_a_pulled_labelled_checkpoint_taints_the_run(home):  # noqa: F811
    labels = tracked(f"""
        policy.check_copy({str(home / 'home-store' / 'ck')!r}, {str(home / 'home-store' / 'ck2')!r}, ['CN'], 1, 'ck')
    """)
    assert "the manifest of" in labels["CN"]


def test_worker_processes_share_the_run_taint_through_its_state_file(home, tmp_path):  # noqa: F811
    state = tmp_path / "taint.jsonl"
    labels = tracked(f"""
        import subprocess, sys
        child = "from jupyter_split import policy; policy.start_taint_tracking(); open({str(home / 'pii' / 'people.csv')!r}).read()"
        subprocess.run([sys.executable, "-c", child], check=True)
        assert policy.run_labels() == {{"CN"}}
    """, state_file=str(state))
    assert list(labels) == ["CN"]
    assert json.loads(state.read_text().splitlines()[0])["labels"]["CN"]


def test_without_tracking_there_is_no_taint(home):  # noqa: F811
    policy.taint_run(["CN"], "ignored")
    assert policy.run_labels() == set()
    assert os.environ.get("JUPYTER_SPLIT_TAINT_FILE") is None
    assert Path(home / "pii" / "people.csv").read_text() == "name,phone\n"


def test_reading_a_labelled_checkpoint_taints_but_reading_its_manifest_does_not(home):  # noqa: F811
    import torch
    from jupyter_split import ckpt

    url = str(home / "home-store" / "labelled")
    ckpt.save({"w": torch.ones(2)}, url, labels=["CN"])  # labelled by its manifest, not by a resident glob
    assert tracked(f"open({url + '/manifest.json'!r}).read()") == {}
    shard = next(p for p in (home / "home-store" / "labelled").rglob("*") if p.suffix == ".safetensors")
    labels = tracked(f"open({str(shard)!r}, 'rb').read()")  # any reader, not only ckpt.load
    assert list(labels) == ["CN"] and f"part of the checkpoint {url}" in labels["CN"]
    assert "the manifest of" in tracked(f"from jupyter_split import ckpt; ckpt.load({url!r}, device='cpu')")["CN"]


def test_what_a_tainted_run_wrote_stays_labelled_after_it_ends(home):  # noqa: F811
    out = home / "work" / "out"
    tracked(f"""
        import fsspec
        open({str(out / 'early.log')!r}, 'w').write('written before the read\\n')
        rows = open({str(home / 'pii' / 'people.csv')!r}).read()
        open({str(out / 'features.csv')!r}, 'w').write(rows.upper())
        open({str(out / 'tmp.part')!r}, 'w').write(rows)
        os.replace({str(out / 'tmp.part')!r}, {str(out / 'final.csv')!r})
        fsspec.filesystem("memory").pipe("memory://exports/rows.csv", rows.encode())
    """, run_id="r-writer")
    (out / "unrelated.txt").write_text("not the run's\n")
    dest = f"{home}/sg-store/x"
    for written in ("features.csv", "final.csv", "early.log"):
        with pytest.raises(policy.ResidencyError, match=f"(?s){written} was written by run r-writer.*people.csv"):
            policy.check_copy(str(out / written), dest, [], 1, written)
    with pytest.raises(policy.ResidencyError):
        policy.check_copy(str(out), dest, [], 1, "out")  # the folder holds them
    with pytest.raises(policy.ResidencyError):
        policy.check_copy("memory://exports/rows.csv", "s3://abroad/rows.csv", [], 1, "rows")
    assert policy.check_copy(str(out), dest, [], 1, "out", files=["unrelated.txt"]) == set()
    assert policy.check_copy(str(out / "unrelated.txt"), dest, [], 1, "unrelated") == set()
