"""SIGKILL a copy at random points, then resume: no reader sees a partial checkpoint, nothing finished is resent."""
from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jupyter_split import sync
from jupyter_split.sync.manifest import STAGING_NAME, Manifest

from tests.services.link import start_link
from tests.sync.test_local import make_tree, tree_hashes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("split_home")]

# the big ones are over RESUMABLE_MIN, so they are written as resumable `.part` files
FILES = {**{f"shards/s{i:02d}.bin": 1 << 20 for i in range(8)}, "big/a.bin": 17 << 20, "big/b.bin": 17 << 20}
CHILD = """
import json, sys
from jupyter_split import sync
print("go", flush=True)
report = sync.copy(sys.argv[1], sys.argv[2], chunk_size=1 << 18, concurrency=2, progress=False)
print(json.dumps({"sent": report.bytes_sent, "kept": report.files_kept}), flush=True)
"""


def start_copy(src: Path, dest: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(src), str(dest)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    return proc


class Reader(threading.Thread):
    """Reads the destination like a checkpoint loader would, the whole time, and records any torn view.

    Its protocol: read the manifest, read and hash every file it names, read the manifest
    again; the view counts only if the manifest did not change meanwhile.
    """

    def __init__(self, dest: Path):
        super().__init__(daemon=True)
        self.dest, self.stop, self.views, self.torn = dest, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            before = self._manifest()
            if before is None:
                time.sleep(0.002)
                continue
            seen = {}
            for entry in Manifest.from_json(before).files:
                try:
                    seen[entry.path] = hashlib.sha256((self.dest / entry.path).read_bytes()).hexdigest()
                except FileNotFoundError:
                    seen[entry.path] = None
            if self._manifest() != before:
                continue  # republished while we read: a loader retries
            self.views += 1
            bad = [e.path for e in Manifest.from_json(before).files if seen[e.path] != e.sha256]
            if bad:
                self.torn.append(bad)

    def _manifest(self) -> bytes | None:
        try:
            return (self.dest / "manifest.json").read_bytes()
        except FileNotFoundError:
            return None


def kill_at_random_points(src: Path, dest: Path, points: int, span: float, rng: random.Random) -> list[float]:
    delays = sorted(rng.uniform(0.0, span) for _ in range(points))
    for delay in delays:
        proc = start_copy(src, dest)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert_consistent(dest)
    return delays


def assert_consistent(dest: Path) -> None:
    """After a kill: no torn file outside staging, and a manifest (if any) vouches only for true bytes."""
    assert all(STAGING_NAME in str(p) for p in dest.glob("**/*.part"))
    if (dest / "manifest.json").exists():
        for entry in Manifest.from_json((dest / "manifest.json").read_text()).files:
            assert hashlib.sha256((dest / entry.path).read_bytes()).hexdigest() == entry.sha256, entry.path


def test_sigkill_at_random_points_then_resume(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, FILES, seed=seed)

    clock = time.monotonic()
    proc = start_copy(src, tmp_path / "timing")
    proc.communicate()
    span = time.monotonic() - clock  # one whole copy: kills land anywhere inside it

    reader = Reader(dest)
    reader.start()
    try:
        kill_at_random_points(src, dest, 10, span, rng)  # a fresh destination
        sync.copy(str(src), str(dest), progress=False)
        assert tree_hashes(dest) == tree_hashes(src)
        for rel in ("shards/s03.bin", "big/a.bin"):  # now an update of a published checkpoint
            make_tree(src, {rel: FILES[rel]}, seed=seed + 1)
        kill_at_random_points(src, dest, 5, span / 3, rng)
        report = sync.copy(str(src), str(dest), progress=False)
    finally:
        reader.stop.set()
        reader.join()
    assert tree_hashes(dest) == tree_hashes(src), f"seed {seed}"
    assert not (dest / STAGING_NAME).exists()
    assert reader.torn == [], f"seed {seed}: a reader saw a partial checkpoint"
    assert reader.views > 0
    assert report.bytes_sent <= FILES["shards/s03.bin"] + FILES["big/a.bin"]  # at most the two changed files


def test_finished_files_and_parts_are_not_sent_again(tmp_path):
    src = tmp_path / "src"
    make_tree(src, FILES)
    # The kill point is a moment, and a busy machine can let the copy run past it between two
    # looks (a 2 ms step overslept lets both big files finish at once): a copy that got past it
    # is thrown away and the copy starts again into a fresh destination, a few times at most.
    for attempt in range(5):
        dest = tmp_path / f"dest{attempt}"
        finished, part = _kill_mid_copy(src, dest)
        if finished and part:
            break
    assert finished and part, "the copy finished before the kill point 5 times; make FILES bigger"

    report = sync.copy(str(src), str(dest), progress=False)
    assert report.files_kept >= len(finished)
    assert report.bytes_sent <= sum(FILES.values()) - sum(finished.values()) - part
    assert tree_hashes(dest) == tree_hashes(src)
    assert json.loads((dest / "manifest.json").read_text())["files"]


def _kill_mid_copy(src: Path, dest: Path) -> tuple[dict[str, int], int]:
    """Kill a copy once a file is finished in place (a fresh destination is written in place; it
    shows no checkpoint until its manifest lands) while a big one is still a part in staging; return
    the finished files' sizes and the part's, or what was seen when the copy ended first."""
    staged = dest / STAGING_NAME / "files"
    proc = start_copy(src, dest)
    deadline = time.monotonic() + 60
    finished: dict[str, int] = {}
    part = 0
    # The copy runs in short steps and is stopped while it is looked at: on a busy machine a look
    # that took long could otherwise miss the moment (the copy finishing in between).
    proc.send_signal(signal.SIGSTOP)
    while time.monotonic() < deadline and not (finished and part) and proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.002)
        proc.send_signal(signal.SIGSTOP)
        sizes = {str(p.relative_to(dest)): _size(p) for p in _listing(dest, "*.bin")
                 if STAGING_NAME not in p.relative_to(dest).parts}
        finished = {rel: size for rel, size in sizes.items() if size == FILES[rel]}  # whole, not mid-write
        part = max((_size(p) for p in _listing(staged, "*.part")), default=0)
        if (dest / "manifest.json").exists():  # published: it ran past the moment
            finished, part = {}, 0
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return finished, part


def _listing(folder: Path, pattern: str) -> list[Path]:
    try:
        return list(folder.rglob(pattern))
    except FileNotFoundError:  # the folder is being created or removed right now
        return []


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed to its final name meanwhile
        return 0


S3_CHILD = """
import json, sys
from jupyter_split import sync
print("go", flush=True)
sync.copy(sys.argv[1], sys.argv[2], dest_options=json.loads(sys.argv[3]), progress=False)
"""


def test_sigkill_during_a_multipart_upload_then_resume(tmp_path, s3):
    from jupyter_split.sync.s3parts import PART_SIZE

    src = tmp_path / "src"
    make_tree(src, {"big.bin": 5 * PART_SIZE})
    s3.make_bucket("kill-parts")
    fs = s3.filesystem()
    # the child reaches S3 through a 20 MB/s link: 4 s for the upload, so the kill lands
    # between parts however fast this machine is
    link = start_link(int(s3.endpoint_url.rsplit(":", 1)[1]), mb_per_s=20)
    try:
        slow = {**s3.storage_options, "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{link.port}"}}
        proc = subprocess.Popen([sys.executable, "-c", S3_CHILD, str(src), "s3://kill-parts/ck", json.dumps(slow)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "go"
        deadline, parts = time.monotonic() + 120, []
        while time.monotonic() < deadline and not parts:
            uploads = fs.call_s3("list_multipart_uploads", Bucket="kill-parts").get("Uploads", [])
            if uploads:
                parts = fs.call_s3("list_parts", Bucket="kill-parts", Key=uploads[0]["Key"],
                                   UploadId=uploads[0]["UploadId"]).get("Parts", [])
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        link.stop()
    assert parts, "no part was uploaded before the deadline"
    assert not fs.exists("kill-parts/ck/manifest.json")

    report = sync.copy(str(src), "s3://kill-parts/ck", dest_options=s3.storage_options, progress=False)
    assert report.bytes_sent <= 5 * PART_SIZE - len(parts) * PART_SIZE
    assert hashlib.sha256(fs.cat_file("kill-parts/ck/big.bin")).hexdigest() == tree_hashes(src)["big.bin"]
