"""The fingerprint index of resident content: fresh on every check, cheap when nothing changed."""
from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import pytest

from jupyter_split import policy, sync, verified
from jupyter_split.config import load_config
from jupyter_split.residency import fingerprints, print_trees
from jupyter_split.paths import data_dir
from jupyter_split.residency.fingerprints import ResidentIndex, resident_index, sha256_many


def _age(path: Path) -> None:
    """Put a file's mtime a minute back, out of the racy window, so its hash is recorded."""
    old = time.time() - 60
    os.utime(path, (old, old))


def test_a_resident_file_rewritten_a_moment_ago_is_fingerprinted_anew(home: Path):
    resident = home / "pii" / "people.csv"
    resident.write_bytes(b"first version of the rows\n" * 50)
    _age(resident)
    out = home / "out"
    out.mkdir()
    (out / "a.txt").write_bytes(b"first version of the rows\n" * 50)
    with pytest.raises(policy.ResidencyError, match="same content"):
        sync.push(str(out), "sg:one", progress=False)
    resident.write_bytes(b"other version of the rows\n" * 50)  # same size, new content, just now
    (out / "a.txt").write_bytes(b"other version of the rows\n" * 50)
    with pytest.raises(policy.ResidencyError, match="same content"):
        sync.push(str(out), "sg:two", progress=False)
    assert not (home / "sg-store" / "one").exists() and not (home / "sg-store" / "two").exists()


def test_recorded_hashes_are_read_in_bulk_and_match_one_by_one(home: Path, monkeypatch):
    folder = home / "pii" / "many"
    folder.mkdir()
    files = []
    for i in range(1200):
        path = folder / f"r{i}.csv"
        path.write_bytes(b"row %d\n" % i * 10)
        _age(path)
        files.append((str(path), os.stat(path)))
    first = sha256_many(files)  # read and recorded
    assert all(first)
    reads = []
    monkeypatch.setattr(fingerprints, "local_sha256", lambda *a: reads.append(a))
    assert sha256_many(files) == first == [verified.known_sha256(st) for _, st in files]
    assert reads == [], "an unchanged, recorded file was read again"
    index = resident_index(load_config())
    index.prefetch({st.st_size for _, st in files})
    assert reads == [] and len(index) == 1201


def test_a_file_of_a_resident_size_but_other_bytes_goes_abroad(home: Path):
    resident = home / "pii" / "people.csv"
    out = home / "out"
    out.mkdir()
    (out / "same-size.bin").write_bytes(b"z" * resident.stat().st_size)
    report = sync.push(str(out), "sg:fine", progress=False)
    assert report.files_sent == 1


def test_a_new_process_takes_the_saved_fingerprints_while_stat_agrees(home: Path, monkeypatch):
    files = []
    for i in range(50):
        path = home / "pii" / f"p{i}.csv"
        path.write_bytes(b"person %d\n" % i * 20)
        _age(path)
        files.append((str(path), os.stat(path)))
    first = sha256_many(files, keep=True)
    fingerprints._memo.clear()
    fingerprints._loaded.clear()  # as a new process finds it
    asked = []
    monkeypatch.setattr(verified, "known_many", lambda stats: asked.append(len(stats)) or [None] * len(stats))
    monkeypatch.setattr(fingerprints, "local_sha256", lambda path, st=None: asked.append(path) or "x")
    assert sha256_many(files, keep=True) == first and asked == []
    rewritten = Path(files[0][0])
    rewritten.write_bytes(b"someone else\n" * 20)  # a saved fingerprint no longer stands for this file
    assert sha256_many([(str(rewritten), os.stat(rewritten))], keep=True) == ["x"] and asked == [1, str(rewritten)]


def test_an_empty_file_goes_abroad_though_the_resident_folder_holds_one(home: Path):
    (home / "pii" / "placeholder.csv").write_bytes(b"")  # every empty file has the same sha256
    out = home / "out"
    out.mkdir()
    (out / "__init__.py").write_bytes(b"")
    assert sync.push(str(out), "sg:empty", progress=False).files_sent == 1


# The saved tree: a check whose walk finds every resident file as the last saved check found it
# (names, device, inode, size, mtime, ctime) takes the saved fingerprints as a whole.

def _residents(home: Path, count: int = 40) -> list[Path]:
    """`count` resident files of distinct bytes and sizes in four folders, aged out of the racy window."""
    _age(home / "pii" / "people.csv")
    paths = [home / "pii" / "people.csv"]
    for i in range(count):
        path = home / "pii" / f"batch{i % 4}" / f"p{i}.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"person %d,phone %d\n" % (i, 13800000000 + i) * (3 + i))
        _age(path)
        paths.append(path)
    return paths


def _check() -> ResidentIndex:
    index = resident_index(load_config())
    index.prefetch(index.sizes())
    return index


def _as_new_process() -> None:
    fingerprints._memo.clear()
    fingerprints._loaded.clear()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _originals(index: ResidentIndex, paths: list[Path]) -> dict[str, str | None]:
    """What the index says of each file's bytes: the resident original it names, if any."""
    found = {}
    for path in paths:
        match = index.same_content(path.stat().st_size, _sha(path))
        found[str(path)] = match.original if match else None
    return found


def _counting(monkeypatch) -> list[tuple[str, object]]:
    """Every record-store question and every file read (or looked up one by one) from now on."""
    asked: list[tuple[str, object]] = []
    known_many, local = verified.known_many, fingerprints.local_sha256
    monkeypatch.setattr(verified, "known_many", lambda stats: asked.append(("records", len(stats))) or known_many(stats))
    monkeypatch.setattr(fingerprints, "local_sha256", lambda path, st=None: asked.append(("read", str(path))) or local(path, st))
    return asked


def test_a_new_process_takes_the_saved_tree_as_a_whole_while_the_walk_agrees(home: Path, monkeypatch):
    paths = _residents(home)
    former = data_dir() / print_trees.FORMER_NAME  # an earlier version's JSON file: superseded, removed
    former.parent.mkdir(parents=True, exist_ok=True)
    former.write_text("{}")
    _check()  # every file hashed, the tree saved
    saved = data_dir() / fingerprints.SAVED_NAME
    umask = os.umask(0)
    os.umask(umask)
    assert saved.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in data_dir().iterdir() if p.name.startswith(fingerprints.SAVED_NAME)] == [saved.name]
    _as_new_process()
    asked = _counting(monkeypatch)
    index = _check()
    assert asked == [] and fingerprints._memo == {}, "an unchanged tree was looked at file by file"
    assert _originals(index, paths) == {str(p): str(p) for p in paths}
    assert index.same_content(paths[1].stat().st_size, "0" * 64) is None
    assert _check() is not None and asked == []  # the next check in this process: the same


@pytest.mark.parametrize("new_process", [True, False], ids=["new process", "same process"])
@pytest.mark.parametrize("change", ["rewritten", "renamed", "added", "removed"])
def test_a_changed_resident_file_is_seen_as_the_file_by_file_check_sees_it(home: Path, monkeypatch, change, new_process):
    paths = _residents(home)
    _check()
    if new_process:
        _as_new_process()
    target, old = paths[7], _sha(paths[7])
    size = target.stat().st_size
    if change == "rewritten":  # same size, other bytes, an mtime other than before and out of the racy window
        st = target.stat()
        target.write_bytes(b"x" * size)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns - 30_000_000_000))
        now = paths
    elif change == "renamed":
        target.rename(target.with_name("renamed.csv"))
        now = [p if p != target else target.with_name("renamed.csv") for p in paths]
    elif change == "added":
        added = home / "pii" / "batch2" / "new.csv"
        added.write_bytes(b"someone new\n" * 33)
        _age(added)
        now = [*paths, added]
    else:
        target.unlink()
        now = [p for p in paths if p != target]
    asked = _counting(monkeypatch)
    index = _check()
    reads = {what for kind, what in asked if kind == "read"}
    found = _originals(index, now)
    assert found == {str(p): str(p) for p in now}
    if change == "rewritten":
        assert reads == {str(target)} and index.same_content(size, old) is None
    elif change == "renamed":
        assert reads <= {str(now[7])} and index.same_content(size, old).original == str(now[7])
    elif change == "added":
        assert reads == {str(now[-1])}
    else:
        assert reads == set() and index.same_content(size, old) is None
    (data_dir() / fingerprints.SAVED_NAME).unlink()  # the reference: no saved tree, every file by itself
    _as_new_process()
    assert _originals(_check(), now) == found


@pytest.mark.parametrize("damage", ["truncated", "a flipped byte", "garbage", "empty"])
def test_a_damaged_saved_tree_is_not_trusted_and_every_file_is_hashed_again(home: Path, monkeypatch, damage):
    paths = _residents(home)
    _check()
    saved = data_dir() / fingerprints.SAVED_NAME
    data = saved.read_bytes()
    if damage == "truncated":  # a torn write
        data = data[:-40]
    elif damage == "a flipped byte":  # in the last file's fingerprint: only a checksum can tell
        data = data[:-40] + bytes([data[-40] ^ 1]) + data[-39:]
    elif damage == "garbage":
        data = b"not a tree of fingerprints" * 100
    else:
        data = b""
    saved.write_bytes(data)
    _as_new_process()
    monkeypatch.setattr(verified, "known_many", lambda stats: [None] * len(stats))
    asked = _counting(monkeypatch)
    index = _check()
    assert sorted(what for kind, what in asked if kind == "read") == sorted(str(p) for p in paths)
    assert _originals(index, paths) == {str(p): str(p) for p in paths}
    _as_new_process()  # the check saved a whole tree again
    asked.clear()
    _check()
    assert asked == []


def test_a_refusal_from_the_saved_tree_names_the_resident_original(home: Path):
    paths = _residents(home)
    out = home / "out"
    out.mkdir()
    (out / "innocent.txt").write_bytes(paths[3].read_bytes())
    _check()
    _as_new_process()
    with pytest.raises(policy.ResidencyError, match=re.escape(str(paths[3]))) as refused:
        sync.push(str(out), "sg:x", progress=False)
    assert "same content" in str(refused.value) and not (home / "sg-store" / "x").exists()


def test_a_tree_partly_hashed_before_hashes_only_the_rest(home: Path, monkeypatch):
    paths = _residents(home)
    first = paths[5]
    index = resident_index(load_config())
    index.prefetch([first.stat().st_size])  # a push whose files collide with one resident size only
    _as_new_process()
    monkeypatch.setattr(verified, "known_many", lambda stats: [None] * len(stats))
    asked = _counting(monkeypatch)
    index = _check()
    assert sorted(what for kind, what in asked if kind == "read") == sorted(str(p) for p in paths if p != first)
    assert _originals(index, paths) == {str(p): str(p) for p in paths}
