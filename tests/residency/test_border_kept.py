"""What crosses is what the guard's scan read: a source elsewhere (S3 on moto_server) is read once,
by the scan, and the copy sends those bytes (a small file's from memory, a bigger one's from a spool
file here), so an object changed after it was judged never goes in its new form, and the S3 link
carries each byte once."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_split import sync
from jupyter_split.config import load_config
from jupyter_split.paths import data_dir
from jupyter_split.residency.kept import SpoolFolder
from jupyter_split.sync import engine, s3read, stream

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("split_home")]

PII = b"name,id\nli wei,11010519491231002X\n"  # GB 11643's own example: a PRC resident ID the scan finds


def _objects(fs, prefix: str, big: bytes, small: bytes) -> None:
    fs.pipe_file(f"{prefix}/model.bin", big)
    fs.pipe_file(f"{prefix}/log.csv", small)


@pytest.mark.parametrize("published", [False, True])
def test_an_object_changed_after_the_scan_goes_as_it_was_scanned(tmp_path, s3, monkeypatch, published):
    rng = random.Random(5)
    big, small = rng.randbytes(3 << 20), b"epoch,loss\n1,0.50\n2,0.25\n"
    bucket = s3.make_bucket(f"kept-{int(published)}")
    fs = s3.filesystem()
    prefix = f"{bucket.removeprefix('s3://')}/ck"
    if published:  # a checkpoint published on S3: its manifest names the clean bytes' sha256
        src = tmp_path / "src"
        src.mkdir()
        (src / "model.bin").write_bytes(big)
        (src / "log.csv").write_bytes(small)
        sync.copy(str(src), f"{bucket}/ck", dest_options=s3.storage_options, progress=False)
    else:
        _objects(fs, prefix, big, small)
    judged = engine.check_residency
    sent_from_source: list[str] = []
    open_read = stream.open_read

    def then_changed(plan, *args, **kwargs):
        carried = judged(plan, *args, **kwargs)
        # after the guard's scan and before the send: the same names, the same sizes, personal data
        _objects(fs, prefix, PII + b"\0" * (len(big) - len(PII)), PII[:len(small)].ljust(len(small), b"\n"))
        return carried

    def counted(src, path, *args, **kwargs):
        sent_from_source.append(path)
        return open_read(src, path, *args, **kwargs)

    monkeypatch.setattr(engine, "check_residency", then_changed)
    monkeypatch.setattr(stream, "open_read", counted)
    # to the default's site abroad: a copy that crosses the border, so the guard scans it
    dest = Path(load_config().site("abroad").storage.removeprefix("file://")) / f"ck{int(published)}"
    report = sync.copy(f"{bucket}/ck", str(dest), src_options=s3.storage_options, progress=False)
    assert report.files_sent == 2
    assert (dest / "model.bin").read_bytes() == big and (dest / "log.csv").read_bytes() == small
    assert sent_from_source == [], "the send read the source again instead of what the scan read"
    assert not any(Path(data_dir(), "spool").iterdir()), "the copy's spool files outlived it"


def _weights(payload: bytes) -> bytes:
    """A safetensors file of one F32 tensor holding `payload`."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [len(payload) // 4], "data_offsets": [0, len(payload)]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + payload


@pytest.mark.parametrize("near", [False, True])
@pytest.mark.parametrize("replaced", [False, True])
def test_weights_on_s3_are_read_once_as_they_are_sent_and_only_as_judged(s3, monkeypatch, replaced, near):
    """The scan reads a big safetensors object's header and skips its weights, so it neither
    downloads nor spools them: the send reads the object as it goes, the version the scan judged
    (its ETag) and no other. One replaced meanwhile (same name, same size) is not sent. From a
    store far away the object comes in ranged GETs, from a near one in one GET (`s3read.near`)."""
    big = _weights(random.Random(6).randbytes(12 << 20))  # over RANGED_MIN: ranges, from a store far away
    bucket = s3.make_bucket(f"weights-{int(replaced)}{int(near)}")
    fs = s3.filesystem()
    fs.pipe_file(f"{bucket.removeprefix('s3://')}/ck/model.safetensors", big)
    got: list[int] = []  # bytes each ranged GET asked for, or each streamed read returned
    get, read = s3read.S3Ranges._get, s3read.S3Stream.read

    async def counted_get(self, piece):
        got.append(piece.last - piece.first + 1)
        return await get(self, piece)

    def counted_read(self, size):
        data = read(self, size)
        got.append(len(data))
        return data

    judged, scanned = engine.check_residency, []

    def then(plan, *args, **kwargs):
        carried = judged(plan, *args, **kwargs)
        scanned.append(sum(got))
        if replaced:  # after the guard's scan and before the send: personal data, the same name and size
            fs.pipe_file(f"{bucket.removeprefix('s3://')}/ck/model.safetensors", PII.ljust(len(big), b"\0"))
        return carried

    monkeypatch.setattr(s3read, "near", lambda fs, path: near)
    monkeypatch.setattr(s3read.S3Ranges, "_get", counted_get)
    monkeypatch.setattr(s3read.S3Stream, "read", counted_read)
    monkeypatch.setattr(engine, "check_residency", then)
    dest = Path(load_config().site("abroad").storage.removeprefix("file://")) / f"weights{int(replaced)}{int(near)}"
    if replaced:
        with pytest.raises(sync.SyncError, match="replaced after the residency guard judged it") as refused:
            sync.copy(f"{bucket}/ck", str(dest), src_options=s3.storage_options, progress=False)
        assert "li wei" not in str(refused.value)
        assert not dest.exists() or not any(p.is_file() and b"li wei" in p.read_bytes() for p in dest.rglob("*"))
    else:
        report = sync.copy(f"{bucket}/ck", str(dest), src_options=s3.storage_options, progress=False)
        assert report.files_sent == 1 and (dest / "model.safetensors").read_bytes() == big
        assert sum(got) >= len(big)  # the send read it all
    assert 0 < scanned[0] <= s3read.FIRST_RANGE < len(big) // 100, "the scan read the weights"
    assert not any(Path(data_dir(), "spool").iterdir()), "the copy's spool files outlived it"


def test_a_spool_left_by_a_killed_copy_is_removed_by_the_next_and_a_live_ones_kept():
    root = Path(data_dir(), "spool")
    killed = subprocess.run([sys.executable, "-c", "import sys, pathlib\n"
                             "from jupyter_split.residency.kept import SpoolFolder\n"
                             "folder = SpoolFolder(pathlib.Path(sys.argv[1]))\n"
                             "(pathlib.Path(folder.path) / '0').write_bytes(b'x' * 100)\n"
                             "print(folder.path)\n", str(root)], capture_output=True, text=True, check=True)
    left = Path(killed.stdout.strip())  # its process ended without closing it, as a killed copy's
    assert (left / "0").exists()
    unused = SpoolFolder(root)  # a copy nothing is scanned for: no folder made, nothing removed
    unused.close()
    assert (left / "0").exists() and sorted(p.name for p in root.iterdir()) == [left.name]
    live = SpoolFolder(root)
    mine = Path(live.path)
    assert not left.exists()
    other = SpoolFolder(root)  # another copy meanwhile: the live one's folder stays
    theirs = Path(other.path)
    assert mine.is_dir() and theirs.is_dir()
    other.close(), live.close()
    assert not mine.exists() and not theirs.exists() and list(root.iterdir()) == []


def test_a_copys_scan_threads_share_one_spool_folder_that_no_other_copy_removes(tmp_path):
    """The scan's threads ask for the copy's spool folder at once, while other copies make theirs:
    each copy gets one folder, which stays until it is closed (a folder being made, not yet locked,
    was taken for a killed copy's and removed, and its files then failed to open: the copy was
    refused as unscannable), and none is left behind."""
    import threading

    root = tmp_path / "spool"
    for _ in range(30):
        copies = [SpoolFolder(root) for _ in range(3)]
        seen: list[tuple[int, str]] = []
        start = threading.Barrier(3 * 8)

        def use(k: int) -> None:
            start.wait()
            path = copies[k].path
            (Path(path) / f"{threading.get_ident()}").write_bytes(b"x")  # as a spool file is written
            seen.append((k, path))

        threads = [threading.Thread(target=use, args=(k,)) for k in range(3) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == 3 * 8
        assert [len({path for k, path in seen if k == i}) for i in range(3)] == [1, 1, 1]
        assert all(Path(path).is_dir() for _, path in seen)
        for copy in copies:
            copy.close()
        assert list(root.iterdir()) == []


def test_a_spool_that_cannot_be_written_is_dropped_and_the_scan_goes_on(tmp_path):
    """A spool file that cannot take the whole file (here the process may write no file over 1,000
    bytes, as a full disk refuses more) ends the spool, not the scan: the send then reads the source."""
    probe = """
import io, resource, signal, sys
from jupyter_split.residency import kept
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit a write fails (EFBIG) instead
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

class Item:
    size, spool = 5000, None

seen = []
item = Item()
def scan(reader):
    while data := reader.read(700):
        seen.append(len(data))
    return "scanned"
print(kept.spool_scan(item, io.BytesIO(b"y" * 5000), sys.argv[1], scan), sum(seen), item.spool)
"""
    path = tmp_path / "0"
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["scanned", "5000", "None"] and not path.exists()
