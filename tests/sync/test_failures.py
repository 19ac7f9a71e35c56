"""A read-only destination and a full disk: clear errors, and the published checkpoint as it was.

Both use a real tmpfs mounted for the test (a small size for the full disk, remounted
read-only for the other): mounting needs root, which CI has.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import fsspec
import pytest

from jupyter_split import sync
from jupyter_split.sync import read_manifest
from jupyter_split.sync.manifest import STAGING_NAME

from tests.sync.test_local import flip_byte, make_tree, tree_hashes

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)"),
              pytest.mark.usefixtures("split_home")]


class Tmpfs:
    def __init__(self, path: Path, size: str):
        self.path = path
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True)


def published_hashes(root: Path) -> dict[str, str]:
    return {rel: sha for rel, sha in tree_hashes(root).items() if not rel.startswith(STAGING_NAME)}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    mount = Tmpfs(tmp_path / "mnt", "4m")
    try:
        yield mount
    finally:
        mount.unmount()


def test_read_only_destination_names_it_and_keeps_the_published_state(tmp_path, tmpfs):
    src, dest = tmp_path / "src", tmpfs.path / "ck"
    make_tree(src, {"a.bin": 200_000, "b.bin": 200_000})
    sync.copy(str(src), str(dest), progress=False)
    published = (dest / "manifest.json").read_bytes()
    before = tree_hashes(dest)
    tmpfs.read_only()
    flip_byte(src / "b.bin")
    with pytest.raises(sync.SyncError) as err:
        sync.copy(str(src), str(dest), progress=False, backoff=0.01)
    text = str(err.value)
    assert "b.bin" in text and "read-only" in text and "published manifest is unchanged" in text
    assert err.value.failed.keys() == {"b.bin"}
    assert (dest / "manifest.json").read_bytes() == published and tree_hashes(dest) == before


def test_full_disk_names_it_frees_the_part_and_keeps_the_published_state(tmp_path, tmpfs):
    src, dest = tmp_path / "src", tmpfs.path / "ck"
    make_tree(src, {"a.bin": 1_500_000, "b.bin": 1_500_000})
    sync.copy(str(src), str(dest), progress=False)
    published = (dest / "manifest.json").read_bytes()
    before = published_hashes(dest)
    # Replacing both shards stages 3 MB next to the published 3 MB: more than the 4 MB disk.
    make_tree(src, {"a.bin": 1_500_000, "b.bin": 1_500_000}, seed=1)
    with pytest.raises(sync.SyncError) as err:
        sync.copy(str(src), str(dest), progress=False, concurrency=1, backoff=0.01)
    text = str(err.value)
    assert "no space left" in text and "run the same copy again" in text
    assert (dest / "manifest.json").read_bytes() == published and published_hashes(dest) == before
    staged = tree_hashes(dest / STAGING_NAME) if (dest / STAGING_NAME).exists() else {}
    source = tree_hashes(src)
    assert all(source[rel.removeprefix("files/")] == sha for rel, sha in staged.items())  # torn files gave their space back
    # once there is room (here: the destination's old shards go), the same copy finishes
    for name in ("a.bin", "b.bin"):
        (dest / name).unlink()
    (dest / "manifest.json").unlink()
    report = sync.copy(str(src), str(dest), progress=False)
    assert tree_hashes(dest) == tree_hashes(src) and report.files_kept + report.files_sent == 2
    assert read_manifest(fsspec.filesystem("file"), str(dest)) is not None


def test_a_failed_commit_unpublishes_rather_than_mixing_versions(tmp_path):
    # An immutable file (chattr +i) refuses the rename that puts its new version in place.
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, {"a.bin": 50_000, "b.bin": 50_000})
    sync.copy(str(src), str(dest), progress=False)
    make_tree(src, {"a.bin": 50_000, "b.bin": 50_000}, seed=1)
    subprocess.run(["chattr", "+i", str(dest / "b.bin")], check=True)
    try:
        with pytest.raises(sync.SyncError, match="publishing failed.*unpublished now.*Run the same copy again"):
            sync.copy(str(src), str(dest), progress=False)
    finally:
        subprocess.run(["chattr", "-i", str(dest / "b.bin")], check=True)
    # a.bin already holds its new bytes: the old manifest must not be there to vouch for it
    assert read_manifest(fsspec.filesystem("file"), str(dest)) is None
    report = sync.copy(str(src), str(dest), progress=False)
    assert (report.files_sent, report.files_kept, report.files_skipped) == (0, 2, 0)  # a in place, b staged
    assert tree_hashes(dest) == tree_hashes(src)
