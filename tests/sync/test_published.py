"""The listing of published checkpoints the sidebar polls every 2 s: a manifest is read again only
when the listing says it changed, on this machine (through symlinked folders, a loop listed once)
and on S3 (moto_server)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_split import sync
from jupyter_split.sync import published as listing
from jupyter_split.sync.manifest import manifest_path
from tests.sync.test_local import make_tree

pytestmark = pytest.mark.usefixtures("split_home")


def counted_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    read = listing.read_manifest

    def counted(fs, root):
        reads.append(root.rstrip("/"))
        return read(fs, root)

    monkeypatch.setattr(listing, "read_manifest", counted)
    return reads


def listed(url: str, options: dict | None) -> dict[str, set[str]]:
    return {rel: {f.path for f in manifest.files} for rel, manifest in listing.published(url, options)}


def check_listing(url: str, options: dict | None, src: Path, monkeypatch, write) -> None:
    """Two checkpoints listed (each manifest read once), listed again (none read), one republished
    with another file (that one read again, and its new files shown), one damaged (skipped)."""
    reads = counted_reads(monkeypatch)
    make_tree(src, {"w/shard-0.bin": 3000, "config.json": 100})
    for name in ("a/ck", "b/ck"):
        sync.copy(str(src), f"{url}/{name}", dest_options=options, progress=False)
    assert listed(url, options) == {"a/ck": {"w/shard-0.bin", "config.json"}, "b/ck": {"w/shard-0.bin", "config.json"}}
    assert len(reads) == 2
    reads.clear()
    assert set(listed(url, options)) == {"a/ck", "b/ck"} and reads == []  # unchanged: nothing read again

    (src / "w" / "shard-1.bin").write_bytes(b"one more shard")
    sync.copy(str(src), f"{url}/a/ck", dest_options=options, progress=False)
    assert listed(url, options)["a/ck"] == {"w/shard-0.bin", "w/shard-1.bin", "config.json"}
    assert [r.rsplit("/", 2)[-2:] for r in reads] == [["a", "ck"]]

    write(manifest_path(f"{url}/b/ck"), b'{"version": 1, "files": "not a list"}')  # no longer one to trust
    assert set(listed(url, options)) == {"a/ck"}


def test_local_listing_reads_a_manifest_again_only_once_it_changed(tmp_path, monkeypatch):
    store = tmp_path / "store"
    check_listing(str(store), None, tmp_path / "src", monkeypatch, lambda path, data: Path(path).write_bytes(data))


def test_local_listing_goes_through_symlinked_folders_once(tmp_path):
    src, store, elsewhere = tmp_path / "src", tmp_path / "store", tmp_path / "elsewhere"
    make_tree(src, {"model.bin": 100})
    sync.copy(str(src), str(elsewhere / "ck"), progress=False)
    store.mkdir()
    os.symlink(elsewhere, store / "linked")
    os.symlink(store, store / "linked" / "loop")  # a loop: each real folder is listed once
    assert set(listed(str(store), None)) == {"linked/ck"}


@pytest.mark.slow
def test_s3_listing_reads_a_manifest_again_only_once_its_etag_changed(tmp_path, s3, monkeypatch):
    bucket = s3.make_bucket("listing")
    fs = s3.filesystem()
    check_listing(f"{bucket}/store", s3.storage_options, tmp_path / "src", monkeypatch,
                  lambda path, data: fs.pipe_file(path, data))
