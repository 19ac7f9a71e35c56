"""push and pull through their faces: the `jupyter-split` command and `%split` in a real kernel."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.core import text, write_config
from tests.sync.test_local import make_tree, tree_hashes

CONFIG = """
[experiment]
home = "home"
default_remote = "abroad"

[sites.abroad]
storage = "{root}/abroad"
jurisdiction = "SG"

[sites.home]
storage = "{root}/home"
jurisdiction = "CN"

[policy]
resident = ["{root}/work/pii/**"]
"""


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_split.cli", *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_push_then_pull_latest_and_clear_errors(split_home):
    write_config(split_home, CONFIG.format(root=split_home.as_uri()))
    work = split_home / "work"
    make_tree(work / "out/step-1", {"w.bin": 50_000}, seed=1)
    make_tree(work / "out/step-2", {"w.bin": 50_000}, seed=2)
    for step in ("step-1", "step-2"):
        done = cli("push", f"out/{step}", "abroad:ckpts/", "--quiet", cwd=work)
        assert done.returncode == 0, done.stderr
        assert "sent 1 files" in done.stdout
    again = cli("push", "out/step-2", "abroad:ckpts/", cwd=work)
    assert "already up to date" in again.stdout

    pulled = cli("pull", "abroad:ckpts/@latest", cwd=work)
    assert pulled.returncode == 0, pulled.stderr
    assert tree_hashes(split_home / "home/ckpts/step-2") == tree_hashes(work / "out/step-2")

    missing = cli("pull", "abroad:ckpts/nope", cwd=work)
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    unknown = cli("push", "out/step-1", "mars:x", cwd=work)
    assert unknown.returncode != 0 and "not a site" in unknown.stderr and "Traceback" not in unknown.stderr

    make_tree(work / "pii/users", {"emails.csv": 100})
    refused = cli("push", "pii/users", "abroad:pii", cwd=work)
    assert refused.returncode == 1 and "CN" in refused.stderr and not (split_home / "abroad/pii").exists()


def test_cli_checkpoints_lists_what_is_published_newest_first(split_home):
    write_config(split_home, CONFIG.format(root=split_home.as_uri()))
    work = split_home / "work"
    assert "no published checkpoint" in cli("checkpoints", cwd=work).stdout
    for step in ("step-1", "step-2"):
        make_tree(work / "out" / step, {"w.bin": 3000}, seed=len(step))
        assert cli("push", f"out/{step}", "abroad:ckpts/", "--quiet", cwd=work).returncode == 0
    (split_home / "abroad/ckpts/half").mkdir()  # being written: no manifest yet, so not listed
    (split_home / "abroad/ckpts/half/w.bin").write_bytes(b"x")
    listed = cli("checkpoints", cwd=work)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["site", "checkpoint", "size"]
    assert [line.split()[:2] for line in lines[1:]] == [["abroad", "ckpts/step-2"], ["abroad", "ckpts/step-1"]]
    assert "2.9 KiB" in lines[1] and "half" not in listed.stdout
    assert cli("checkpoints", "--site", "home", cwd=work).stdout.strip() == "no published checkpoint in the storage of site 'home' yet"
    unknown = cli("checkpoints", "--site", "mars", cwd=work)
    assert unknown.returncode != 0 and "mars" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.slow
def test_split_push_in_a_notebook(kernel, split_home):
    write_config(split_home, CONFIG.format(root=split_home.as_uri()))
    make_tree(split_home / "work/out/step-1", {"w.bin": 50_000})
    outputs = kernel.ok("%split push out/step-1 abroad:ckpts/")
    assert "sent 1 files" in text(outputs)
    outputs = kernel.ok("from jupyter_split import sync\nprint(sync.pull('abroad:ckpts/@latest', progress=False))")
    assert "already up to date" not in text(outputs) and "sent 1 files" in text(outputs)
    assert tree_hashes(split_home / "home/ckpts/step-1") == tree_hashes(split_home / "work/out/step-1")


@pytest.mark.slow
def test_a_cell_abroad_pushes_its_checkpoint(kernel, split_home):
    write_config(split_home, CONFIG.format(root=split_home.as_uri()))
    outputs = kernel.ok(
        "%%on abroad\n"
        "import os, pathlib\n"
        "from jupyter_split import sync\n"
        "out = pathlib.Path('cell-out/step-9'); out.mkdir(parents=True)\n"
        "(out / 'w.bin').write_bytes(os.urandom(4096))\n"
        "print(sync.push(str(out), 'abroad:runs/', progress=False))\n"
    )
    assert "sent 1 files" in text(outputs)
    landed = split_home / "abroad/runs/step-9"
    assert (landed / "manifest.json").exists() and (landed / "w.bin").stat().st_size == 4096
