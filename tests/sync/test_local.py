"""sync between local folders: incremental, same-size changes, repair, atomic publish, errors."""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import fsspec
import pytest

from jupyter_split import sync
from jupyter_split.sync import FileEntry, HashingWriter, Manifest, ManifestError, publish, read_manifest
from jupyter_split.sync.manifest import STAGING_NAME

pytestmark = pytest.mark.usefixtures("split_home")  # its own data dir (audit log) and no config


def make_tree(root: Path, files: dict[str, int], seed: int = 0) -> dict[str, str]:
    """Write random files; return rel -> sha256."""
    rng = __import__("random").Random(seed)
    out = {}
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size)
        path.write_bytes(data)
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"}


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


FILES = {"model/shard-0.bin": 300_000, "model/shard-1.bin": 300_000, "config.json": 120, "tok/vocab.txt": 5_000}


def test_manifest_round_trip_and_publish_is_atomic_rename(tmp_path):
    fs = fsspec.filesystem("file")
    m = Manifest(files=[FileEntry("a/b.bin", 3, "ab" * 32)], run_id="r-1", site="sg", labels=["CN"],
                 parents=["s3://x/y"], meta={"dtype": "bf16"})
    assert read_manifest(fs, str(tmp_path)) is None
    publish(fs, str(tmp_path), m)
    assert read_manifest(fs, str(tmp_path)) == m
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]  # no temp file left beside it
    assert json.loads((tmp_path / "manifest.json").read_text())["version"] == 1


@pytest.mark.parametrize("text, words", [
    ("{not json", "not valid JSON"),
    ('{"files": [{"path": "../etc/passwd", "size": 1, "sha256": "x"}]}', "not a clean relative"),
    ('{"files": [], "version": 99}', "version 99"),
    ('{"files": [{"path": "a"}]}', "lacks path, size or sha256"),
])
def test_bad_manifests_are_named(text, words):
    with pytest.raises(ManifestError, match=words):
        Manifest.from_json(text, where="s3://b/ck/manifest.json")


def test_hashing_writer_hashes_what_it_writes():
    target = io.BytesIO()
    writer = HashingWriter(target)
    writer.write(b"abc")
    writer.write(b"def")
    assert target.getvalue() == b"abcdef"
    assert (writer.size, writer.hexdigest()) == (6, hashlib.sha256(b"abcdef").hexdigest())


def test_copy_publishes_a_verified_tree_with_metadata(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    hashes = make_tree(src, FILES)
    report = sync.copy(str(src), str(dest), labels=["CN"], run_id="run-7", site="home", parents=["ck-0"], progress=False)
    assert tree_hashes(dest) == hashes
    manifest = read_manifest(fsspec.filesystem("file"), str(dest))
    assert {e.path: e.sha256 for e in manifest.files} == hashes
    assert (manifest.labels, manifest.run_id, manifest.site, manifest.parents) == (["CN"], "run-7", "home", ["ck-0"])
    assert report.files_sent == report.files_verified == len(FILES)
    assert report.bytes_sent == sum(FILES.values()) and report.published
    assert not (dest / STAGING_NAME).exists()


def test_resync_skips_unchanged_and_catches_a_same_size_change(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, FILES)
    sync.copy(str(src), str(dest), progress=False)
    again = sync.copy(str(src), str(dest), progress=False)
    assert (again.files_sent, again.files_skipped, again.published) == (0, len(FILES), False)

    before = (src / "model/shard-1.bin").stat().st_size
    flip_byte(src / "model/shard-1.bin")
    assert (src / "model/shard-1.bin").stat().st_size == before
    changed = sync.copy(str(src), str(dest), progress=False)
    assert changed.files_sent == 1 and changed.bytes_sent == FILES["model/shard-1.bin"]
    assert tree_hashes(dest) == tree_hashes(src)


@pytest.mark.parametrize("first", ["send", "resync"])
def test_a_plain_folder_resync_reads_no_file_unchanged_since_it_was_hashed(tmp_path, monkeypatch, first):
    """As git's index: a source file whose stat is the one recorded with its hash is not read again,
    recorded by the copy that sent it (read whole under its pin) or by a re-sync that hashed it."""
    from jupyter_split.sync import fsutil

    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, FILES)
    old = time.time() - 60  # out of the racy window: hashes are recorded
    for path in src.rglob("*"):
        os.utime(path, (old, old))
    sync.copy(str(src), str(dest), progress=False)  # records the hashes of the files it sends
    if first == "resync":
        from jupyter_split import verified
        monkeypatch.setattr(verified, "_opened", {})  # a fresh store: only the re-sync below records them
        monkeypatch.setenv("JUPYTER_SPLIT_DATA", str(tmp_path / "other-data"))
        sync.copy(str(src), str(dest), progress=False)  # hashes the sources it skips, and records them
    read: list[str] = []
    real = fsutil.local_sha256
    monkeypatch.setattr(fsutil, "local_sha256",  # the sources it reads (a file sent is read back at its destination)
                        lambda path, st=None: path.startswith(str(src)) and read.append(path) or real(path, st))
    again = sync.copy(str(src), str(dest), progress=False)
    assert (again.files_sent, again.files_skipped) == (0, len(FILES)) and read == []
    flip_byte(src / "model/shard-1.bin")  # a same-size change: its stat changed, so it is read and sent
    changed = sync.copy(str(src), str(dest), progress=False)
    assert changed.files_sent == 1 and read == [str(src / "model/shard-1.bin")]
    assert tree_hashes(dest) == tree_hashes(src)


def test_published_source_resync_reads_only_manifests(tmp_path, monkeypatch):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, FILES)
    sync.copy(str(src), str(tmp_path / "published"), progress=False)
    sync.copy(str(tmp_path / "published"), str(dest), progress=False)
    opened: list[str] = []
    real_open = fsspec.implementations.local.LocalFileSystem._open

    def spy(self, path, *args, **kwargs):
        opened.append(path)
        return real_open(self, path, *args, **kwargs)

    monkeypatch.setattr(fsspec.implementations.local.LocalFileSystem, "_open", spy)
    report = sync.copy(str(tmp_path / "published"), str(dest), progress=False)
    assert report.files_skipped == len(FILES) and report.files_sent == 0
    assert opened and all(path.endswith("/manifest.json") for path in opened)  # no data file was opened


def test_corrupted_byte_at_destination_is_found_by_deep_and_repaired(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    hashes = make_tree(src, FILES)
    sync.copy(str(src), str(dest), progress=False)
    flip_byte(dest / "model/shard-0.bin")
    report = sync.copy(str(src), str(dest), deep=True, progress=False)
    assert report.files_sent == 1 and report.files_verified == len(FILES)
    assert tree_hashes(dest) == hashes


def test_source_that_contradicts_its_manifest_fails_naming_the_file(tmp_path):
    src, mid, dest = tmp_path / "src", tmp_path / "mid", tmp_path / "dest"
    make_tree(src, FILES)
    sync.copy(str(src), str(mid), progress=False)
    flip_byte(mid / "tok/vocab.txt")
    with pytest.raises(sync.SyncError) as err:
        sync.copy(str(mid), str(dest), progress=False, backoff=0.01)
    text = str(err.value)
    assert "tok/vocab.txt" in text and "does not match its manifest" in text and "nothing was published" in text
    assert set(err.value.done) == set(FILES) - {"tok/vocab.txt"}
    assert read_manifest(fsspec.filesystem("file"), str(dest)) is None
    # the finished files wait in staging; once the source is right they are kept, not resent
    sync.copy(str(src), str(mid), progress=False, deep=True)
    report = sync.copy(str(mid), str(dest), progress=False)
    assert (report.files_kept, report.files_sent) == (len(FILES) - 1, 1)


def test_removed_source_file_leaves_the_published_checkpoint(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, FILES)
    sync.copy(str(src), str(dest), progress=False)
    (src / "config.json").unlink()
    sync.copy(str(src), str(dest), progress=False)
    assert not (dest / "config.json").exists()
    assert "config.json" not in read_manifest(fsspec.filesystem("file"), str(dest)).by_path()


def test_single_file_and_missing_source(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x" * 1000)
    report = sync.copy(str(tmp_path / "w.bin"), str(tmp_path / "ck"), progress=False)
    assert report.files_sent == 1 and (tmp_path / "ck" / "w.bin").read_bytes() == b"x" * 1000
    with pytest.raises(sync.PlanError, match="does not exist"):
        sync.copy(str(tmp_path / "nope"), str(tmp_path / "ck2"), progress=False)


def test_latest_ignores_unpublished_folders(tmp_path):
    make_tree(tmp_path / "src", {"w.bin": 10})
    with pytest.raises(FileNotFoundError, match="no published checkpoint"):
        sync.latest(str(tmp_path / "ckpts"))
    sync.copy(str(tmp_path / "src"), str(tmp_path / "ckpts/step-1"), progress=False)
    sync.copy(str(tmp_path / "src"), str(tmp_path / "ckpts/step-2"), progress=False)
    (tmp_path / "ckpts/step-3").mkdir()  # being written: no manifest yet
    assert sync.latest(str(tmp_path / "ckpts")).endswith("/step-2")


@pytest.mark.parametrize("changed", [False, True])
def test_a_manifest_temp_left_by_a_killed_publish_is_cleaned_up(tmp_path, changed):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, FILES)
    sync.copy(str(src), str(dest), progress=False)
    stale = dest / ".manifest.json.0123abcd.tmp"  # what a SIGKILL between write and rename leaves
    stale.write_text("{}")
    if changed:
        flip_byte(src / next(iter(FILES)), offset=0)
    sync.copy(str(src), str(dest), progress=False)
    assert not stale.exists() and tree_hashes(dest) == tree_hashes(src)


@pytest.mark.parametrize("field, value", [
    ("labels", "CN"), ("labels", None), ("labels", [1]), ("labels", [""]), ("parents", "a"), ("meta", []),
    ("run_id", 5), ("site", ["sg"]), ("created", "yesterday"), ("created", True),
])
def test_a_manifest_field_of_the_wrong_type_is_refused_not_read_as_it_comes(field, value):
    # labels of "CN" read as a list would be the labels C and N: the checkpoint's residency lost
    text = json.dumps({"files": [], "version": 1, field: value})
    with pytest.raises(ManifestError, match=f"`{field}`"):
        Manifest.from_json(text, "the manifest")


def test_a_manifest_file_of_negative_size_is_refused():
    text = json.dumps({"files": [{"path": "a", "size": -5, "sha256": "0" * 64}], "version": 1})
    with pytest.raises(ManifestError, match="negative size"):
        Manifest.from_json(text, "the manifest")


def test_a_copy_records_its_hashes_in_one_transaction_that_another_process_reads(tmp_path, monkeypatch):
    """A commit of the record store is a journal's fsyncs: one a file made a push of 10,000 small
    files take 14 s instead of 3. A copy's records (the sources it sends, its destination's files
    checked) go in one transaction at its end, and a new process finds them there."""
    import subprocess
    import sys

    from jupyter_split import verified

    src, dest = tmp_path / "src", tmp_path / "dest"
    files = {f"part{i % 7}/f{i}.txt": 200 + i for i in range(300)}
    make_tree(src, files)
    old = time.time() - 60  # out of the racy window: hashes are recorded
    for path in src.rglob("*"):
        os.utime(path, (old, old))
    monkeypatch.setattr(verified, "_opened", {})  # this test's data folder, opened afresh
    writes: list[int] = []
    real = verified._write
    monkeypatch.setattr(verified, "_write", lambda rows: writes.append(len(rows)) or real(rows))
    report = sync.copy(str(src), str(dest), progress=False)
    assert report.files_sent == len(files)
    assert len(writes) == 1 and writes[0] >= len(files), writes  # the sources at least, in one write

    # another process (a re-sync from a terminal) finds every source's hash without reading it
    probe = ("import os, sys\nfrom jupyter_split import verified\n"
             "paths = sys.argv[1:]\n"
             "print(sum(verified.known_sha256(os.stat(p)) is not None for p in paths))")
    done = subprocess.run([sys.executable, "-c", probe, *(str(src / rel) for rel in files)],
                          capture_output=True, text=True, env=os.environ, timeout=120, check=True)
    assert done.stdout.strip() == str(len(files)), done.stderr


def test_records_held_by_a_block_are_found_at_once_and_written_when_the_last_block_ends(tmp_path, monkeypatch):
    from jupyter_split import verified

    monkeypatch.setattr(verified, "_opened", {})
    files = [tmp_path / f"f{i}" for i in range(3)]
    for i, path in enumerate(files):
        path.write_bytes(b"x" * (i + 1))
        old = time.time() - 60
        os.utime(path, (old, old))
    stats = [path.stat() for path in files]
    writes: list[int] = []
    real = verified._write
    monkeypatch.setattr(verified, "_write", lambda rows: writes.append(len(rows)) or real(rows))
    with verified.together():
        verified.remember(stats[0], time.time_ns(), "a" * 64)
        with verified.together():  # a nested block (a copy inside a copy's face) writes nothing itself
            verified.remember(stats[1], time.time_ns(), "b" * 64)
        assert writes == [] and verified.known_sha256(stats[1]) == "b" * 64  # this process sees it at once
    assert writes == [2]
    verified.remember(stats[2], time.time_ns(), "c" * 64)  # outside a block: written at once
    assert writes == [2, 1]
    verified._seen.clear()  # as another process: from the store
    assert [verified.known_sha256(st) for st in stats] == ["a" * 64, "b" * 64, "c" * 64]
