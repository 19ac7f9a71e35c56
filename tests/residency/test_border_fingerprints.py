"""The fingerprint index of resident content: fresh on every check, cheap when nothing changed."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jupyter_split import policy, sync, verified
from jupyter_split.config import load_config
from jupyter_split.residency import fingerprints
from jupyter_split.residency.fingerprints import resident_index, sha256_many


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
