"""The red team through every face but the Python call: the sidebar's transfer endpoint, a
run's own push on its site, and generated trees and names (hypothesis) hiding a resident file.

Every attempt must be refused before the first byte: nothing resident at the destination,
a `refused` line in the audit log. Generated clean trees must still go abroad.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import HTTPClientError

from jupyter_split import policy, sync

from tests.fixtures.core import text
from tests.residency.test_border_escapes import OTHER, assert_refused, hard_link, landed
from tests.residency.test_border_escapes import bucket, world  # noqa: F401 - the fixtures, shared

pytest_plugins = ["pytest_jupyter.jupyter_server"]


# -- the sidebar's transfer endpoint ------------------------------------------------------------

@pytest.fixture
def jp_server_config(world: Path) -> dict:
    return {"ServerApp": {"jpserver_extensions": {"jupyter_split": True}}}


def _publish_at_home(world: Path, name: str, disguise) -> None:
    """A clean checkpoint published in home storage, whose listed file is then replaced by `disguise`."""
    folder = world / "staging" / name
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(OTHER)
    sync.copy(str(folder), f"file://{world}/home-store/ckpts/{name}", progress=False)
    listed = world / "home-store" / "ckpts" / name / "weights.bin"
    listed.unlink()
    disguise(world / "pii", listed)


@pytest.mark.parametrize("disguise", [
    lambda pii, path: os.link(pii / "people.csv", path),
    lambda pii, path: shutil.copyfile(pii / "more" / "visits.csv", path),
    lambda pii, path: path.symlink_to(pii / "people.csv"),
], ids=["hard-link", "copy", "symlink"])
async def test_the_sidebar_transfer_refuses_a_checkpoint_hiding_resident_data(jp_fetch, world, s3, bucket, disguise):
    # the manifest says weights.bin is clean weights (no labels): the file is judged as it is now
    _publish_at_home(world, "tuned", disguise)
    before = len(policy.audit_entries(decision="refused"))
    body = json.dumps({"site": "home", "name": "ckpts/tuned", "to_site": "sgs3"}).encode()
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", "checkpoints", "transfer", method="POST", body=body)
    assert err.value.code == 403, err.value.response.body
    assert "Nothing was sent" in json.loads(err.value.response.body)["refused"]
    assert landed("sgs3", world, s3, bucket) == []
    assert len(policy.audit_entries(decision="refused")) == before + 1


# -- a run's own push, on its site ---------------------------------------------------------------

@pytest.mark.slow
def test_a_home_runs_own_push_of_a_hard_link_is_refused(world, s3, bucket, kernel):
    hard_link(world)
    outputs, reply = kernel.run(
        "%%on home\n"
        "from jupyter_split import sync\n"
        f"sync.push({str(world / 'src')!r}, 'sgs3:from-a-run', progress=False)\n")
    shown = text(outputs) + json.dumps(reply)
    assert reply["status"] == "error" and "ResidencyError" in shown and "same device and inode" in shown, shown
    assert landed("sgs3", world, s3, bucket) == []
    [entry] = policy.audit_entries(decision="refused")
    assert entry["to_site"] == "sgs3" and entry["run_id"]


# -- generated trees and names --------------------------------------------------------------------

NAME = st.text(st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd"), whitelist_characters=" -_.()+,@~"),
               min_size=1, max_size=12).filter(lambda s: s.strip(". ") == s and s not in (".", ".."))
PATH = st.lists(NAME, min_size=1, max_size=4)
DISGUISES = ("symlink", "relative-symlink", "hard-link", "copy", "folder-symlink")


def _plant(root: Path, src: Path, parts: list[str], how: str, which: str) -> None:
    original = root / "pii" / which
    target = src.joinpath(*parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a generated clean file stands where a folder is needed
        target = src.joinpath(uuid.uuid4().hex[:8], *parts)
        target.parent.mkdir(parents=True)
    if target.exists() or target.is_symlink():
        target = target.with_name(target.name + "-x")
    if how == "symlink":
        target.symlink_to(original)
    elif how == "relative-symlink":
        target.symlink_to(os.path.relpath(original, target.parent))
    elif how == "hard-link":
        os.link(original, target)
    elif how == "copy":
        shutil.copyfile(original, target)
    else:
        target.symlink_to(original.parent)


def _clean_tree(src: Path, paths: list[list[str]]) -> None:
    for i, parts in enumerate(paths):
        path = src.joinpath(*parts)
        if path.exists():
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(OTHER + str(i).encode())
        except (FileExistsError, NotADirectoryError):
            continue  # a generated file where another path needs a folder: leave it out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clean=st.lists(PATH, max_size=8), hidden=PATH, how=st.sampled_from(DISGUISES),
       which=st.sampled_from(["people.csv", "more/visits.csv"]), site=st.sampled_from(["sg", "sgs3", "sgsftp"]))
def test_generated_trees_hiding_a_resident_file_are_refused(world, s3, bucket, clean, hidden, how, which, site):
    src = world / "gen" / uuid.uuid4().hex[:8]
    src.mkdir(parents=True)
    _clean_tree(src, clean)
    _plant(world, src, hidden, how, which)
    dest = f"{site}:gen-{uuid.uuid4().hex[:6]}"
    assert_refused(lambda: sync.push(str(src), dest, progress=False), site, world, s3, bucket)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clean=st.lists(PATH, min_size=1, max_size=8))
def test_generated_clean_trees_go_abroad_whole(world, clean):
    src = world / "gen" / uuid.uuid4().hex[:8]
    src.mkdir(parents=True)
    _clean_tree(src, clean)
    sent = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
    name = f"gen-{uuid.uuid4().hex[:6]}"
    sync.push(str(src), f"sg:{name}", progress=False)
    landed_files = sorted(str(p.relative_to(world / "sg-store" / name)) for p in (world / "sg-store" / name).rglob("*")
                          if p.is_file() and p.name != "manifest.json")
    assert landed_files == sent


@pytest.mark.slow
def test_a_refused_push_does_not_taint_the_kernel_that_asked(world, s3, bucket, kernel):
    hard_link(world)
    outputs, reply = kernel.run(f"%split push {world}/src sgs3:nb")
    assert reply["status"] == "error" and "same device and inode" in text(outputs) + json.dumps(reply)
    # the guard read the resident file to judge it: that is no read of the kernel's
    outputs = kernel.ok("x = [1, 2, 3]\n%split policy")
    assert "this kernel: CN" not in text(outputs), text(outputs)
    assert "6" in text(kernel.ok("%%on sg --in x\nprint(sum(x))"))
