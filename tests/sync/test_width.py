"""Sync at the link's width: over a link that caps each flow, a push to SFTP uses several SSH
connections (big files spread over them, one big file in ranges across them) and goes well
above one flow's cap; a cut mid-copy reconnects, resumes each file where the server confirmed
it, and publishes a whole, verified checkpoint with no user action."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from jupyter_split import sync
from jupyter_split.config import ConfigError, SyncOptions, load_config, parse_config
from jupyter_split.sync import ranges, stream, width
from jupyter_split.sync.manifest import STAGING_NAME, read_manifest
from jupyter_split.sync.fsutil import resolve
from jupyter_split.paths import data_dir

from tests.services.link import start_link
from tests.sync.test_local import make_tree, tree_hashes

# alone: copies through the link model must reach a rate above one flow's cap
pytestmark = [pytest.mark.slow, pytest.mark.alone, pytest.mark.usefixtures("split_home")]

FLOW = 1.5e6   # one flow's cap, each way (bytes a second)
RTT = 0.08
# The tests that measure no rate (the cap, the cuts) run on the same link scaled in time: rates
# FASTER times these, the round trip and the width's step 1/FASTER of them, so the same bytes go
# through the same round trips and width steps in 1/FASTER of the time (a busy machine slows them
# down, it cannot fail them; the rates the other tests check are kept where it delivers them).
FASTER = 4
CHUNK = 1 << 20  # files of RANGED_MIN_CHUNKS chunks or more go in ranges


class Linked:
    """The test sshd behind a link that holds each connection to FLOW and all of them to 4 x FLOW."""

    def __init__(self, sshd, root: Path, faster: float = 1):
        self.sshd = sshd
        spec = {"flow_rate": FLOW * faster, "rate": 4 * FLOW * faster, "delay": RTT / 2 / faster, "jitter": 0.001}
        self.link = start_link(sshd.port, profile="border", **spec)
        known = root / "known_hosts_link"
        known.write_text(f"[127.0.0.1]:{self.link.port} {sshd.host_public_key}\n")
        self.options = {"username": sshd.user, "client_keys": [sshd.identity_file], "known_hosts": str(known)}
        self.most = 0
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._count, daemon=True)
        self._watch.start()

    def url(self, path: Path) -> str:
        return f"ssh://127.0.0.1:{self.link.port}{path}"

    def connections(self) -> int:
        """Connections the link carries to the server now."""
        relay = psutil.Process(self.link.process.pid)
        return sum(1 for c in relay.net_connections(kind="tcp")
                   if c.raddr and c.raddr.port == self.sshd.port and c.status == psutil.CONN_ESTABLISHED)

    def _count(self) -> None:
        while not self._stop.wait(0.05):
            self.most = max(self.most, self.connections())

    def stop(self) -> None:
        self._stop.set()
        self._watch.join()
        self.link.stop()


@pytest.fixture
def linked(sshd, tmp_path):
    link = Linked(sshd, tmp_path)
    yield link
    link.stop()


@pytest.fixture
def fast_linked(sshd, tmp_path, monkeypatch):
    """`linked`, FASTER times as fast, the width's clock with it."""
    monkeypatch.setattr(width, "STEP", width.STEP / FASTER)
    link = Linked(sshd, tmp_path, faster=FASTER)
    yield link
    link.stop()


def count_lanes(monkeypatch) -> list[int]:
    """How many lanes (connections) each ranged file had, every time one might have joined."""
    lanes: list[int] = []
    opened = ranges.Ranged._add_lanes

    def add_lane(self):
        opened(self)
        lanes.append(len(self._lanes))

    monkeypatch.setattr(ranges.Ranged, "_add_lanes", add_lane)
    return lanes


def cut_mid_copy(linked: Linked, part: Path, ready: Callable[[], bool], copy: Callable[[], Any]) -> tuple[Any, int]:
    """Run `copy` and cut the link once `ready()`; the copy's report (it must finish by itself)
    and the size of `part` at the cut."""
    done: dict = {}

    def run() -> None:
        try:
            done["report"] = copy()
        except Exception as exc:
            done["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert part.exists(), "the big file never started"
    arrived = part.stat().st_size
    linked.link.cut()
    thread.join(40)
    assert not thread.is_alive() and "report" in done, str(done.get("error"))
    return done["report"], arrived


def holds_more(part: Path, after: int) -> Callable[[], bool]:
    """Whether `part` holds more than `after` bytes (a range past them may have landed before the ones below)."""
    return lambda: part.exists() and part.stat().st_size > after


def _published(dest: Path, hashes: dict[str, str]) -> None:
    assert tree_hashes(dest) == hashes
    manifest = read_manifest(resolve(str(dest), None).fs, str(dest))
    assert {e.path: e.sha256 for e in manifest.files} == hashes


def test_a_push_of_big_files_goes_at_several_flows_width(tmp_path, linked):
    src, dest = tmp_path / "src", tmp_path / "dest"
    hashes = make_tree(src, {f"shards/s{i}.bin": 12 << 20 for i in range(4)})
    report = sync.copy(str(src), linked.url(dest), dest_options=linked.options, chunk_size=CHUNK, progress=False)
    _published(dest, hashes)
    assert report.mb_per_s * 1e6 > 2 * FLOW, report
    assert linked.most >= 3


def test_one_big_file_is_written_in_ranges_across_connections(tmp_path, linked, monkeypatch):
    src, dest = tmp_path / "src", tmp_path / "dest"
    hashes = make_tree(src, {"model.bin": 48 << 20})
    lanes = count_lanes(monkeypatch)
    report = sync.copy(str(src), linked.url(dest), dest_options=linked.options, chunk_size=CHUNK, progress=False)
    _published(dest, hashes)
    assert max(lanes) >= 3 and linked.most >= 3
    assert report.mb_per_s * 1e6 > 2 * FLOW, report


def test_the_width_is_capped_by_the_config(tmp_path, fast_linked):
    src, dest = tmp_path / "src", tmp_path / "dest"
    hashes = make_tree(src, {"model.bin": 6 << 20})
    config = load_config().model_copy(update={"sync": SyncOptions(max_connections=1)})
    sync.copy(str(src), fast_linked.url(dest), dest_options=fast_linked.options, chunk_size=CHUNK, progress=False,
              config=config)
    _published(dest, hashes)
    assert fast_linked.most == 1


def test_a_cut_mid_copy_reconnects_and_resumes_each_file(tmp_path, fast_linked, monkeypatch):
    src, dest = tmp_path / "src", tmp_path / "dest"
    hashes = make_tree(src, {"model.bin": 20 << 20, "shards/a.bin": 6 << 20, "shards/b.bin": 6 << 20, "c.json": 300})
    starts: list[tuple[str, int]] = []
    send = stream.send_file

    def recorded(plan, item, **kwargs):
        starts.append((item.rel, item.resume_from))
        return send(plan, item, **kwargs)

    monkeypatch.setattr(stream, "send_file", recorded)
    writers: list = []
    open_writer = stream._open_writer

    def kept(dest_, target, offset, chunk):
        writer = open_writer(dest_, target, offset, chunk)
        if target.endswith("model.bin.part"):
            writers.append(writer)
        return writer

    def confirmed() -> bool:
        # cut once the server confirmed the file's first MiBs: with every lane's pieces landing at
        # once, the part's size says only that a range far into the file began
        try:
            return bool(writers) and writers[-1].acked >= 4 << 20
        except RuntimeError:  # its pieces in flight changed while read from this thread: ask again
            return False

    monkeypatch.setattr(stream, "_open_writer", kept)
    cut_mid_copy(fast_linked, dest / STAGING_NAME / "files" / "model.bin.part", confirmed,
                 lambda: sync.copy(str(src), fast_linked.url(dest), dest_options=fast_linked.options, chunk_size=CHUNK,
                                   progress=False))
    _published(dest, hashes)
    resumed = [at for rel, at in starts if rel == "model.bin"]
    assert len(resumed) >= 2 and resumed[-1] >= 1 << 20  # resumed where the server confirmed it, not from 0


def test_max_connections_out_of_range_is_a_clear_config_error():
    home = {"home": {"jurisdiction": "DE"}, "abroad": {"jurisdiction": "SG"}}
    for bad in (0, 65, "many"):
        with pytest.raises(ConfigError, match=r"sync\.max_connections"):
            parse_config({"sites": home, "sync": {"max_connections": bad}}, "test")
    assert parse_config({"sites": home, "sync": {"max_connections": 3}}, "test").sync.max_connections == 3


def test_the_width_doubles_while_each_connection_adds_its_share_holds_at_the_cap_and_halves_on_a_stall(monkeypatch):
    """The rule on a link that holds each flow to 1 MB/s and all to 12 MB/s, read once a second."""
    now = [0.0]
    monkeypatch.setattr(width.time, "monotonic", lambda: now[0])
    w = width.Width(cap=64, start=4)
    live = [4]
    w.live = lambda: live[0]

    def second(mb: float) -> int:
        now[0] += 1.0
        w.sent(int(mb * 1e6))
        live[0] = w.target  # the connections asked for open before the next second
        return w.target

    assert w.target == 4
    # 4 flows carry 4 MB/s, 8 carry 8: each adds its share, the width doubles
    assert [second(mb) for mb in (4, 8)] == [8, 16]
    # 16 flows share 12 MB/s: each carries 0.75 of one flow's best, still worth a doubling
    assert second(12) == 32
    # 32 flows share the same 12 MB/s (0.375 each): the width holds, judged on two readings
    assert [second(mb) for mb in (12, 12, 12, 12)] == [32, 32, 32, 32]
    # one reading of next to nothing (files in flight ended together) is not a stall
    assert second(0.1) == 32
    assert second(12) == 32
    # two in a row are: halved, and what one flow carries is measured again
    assert [second(0.1), second(0.1)] == [32, 16]
    live[0] = 8
    assert second(9) == 16  # not judged while the connections asked for are still opening
    w.back_off()
    assert w.target == 8


def test_the_width_is_read_on_the_bytes_the_server_confirmed_not_on_bursts(monkeypatch):
    """Noisy readings (pieces ending in bunches) around a steady share per connection never halve the width."""
    now = [0.0]
    monkeypatch.setattr(width.time, "monotonic", lambda: now[0])
    w = width.Width(cap=16, start=8)
    w.live = lambda: w.target
    for mb in (8, 8, 15, 4, 14, 2.4, 13, 9, 16, 6, 3.6, 12):
        now[0] += 1.0
        w.sent(int(mb * 1e6))
    assert w.target == 16
    assert [n for n, _ in w.history] == [8, 16] + [16] * 10


def _published_there(tmp_path: Path, files: dict[str, int]) -> tuple[Path, dict[str, str]]:
    """A checkpoint published in the server's folder straight on its disk (not through the link)."""
    src, there = tmp_path / "src", tmp_path / "there"
    hashes = make_tree(src, files)
    sync.copy(str(src), str(there), progress=False)
    return there, hashes


def test_a_pull_reads_one_big_file_in_ranges_across_connections(tmp_path, linked, monkeypatch):
    there, hashes = _published_there(tmp_path, {"model.bin": 48 << 20})
    lanes = count_lanes(monkeypatch)
    dest = tmp_path / "dest"
    report = sync.copy(linked.url(there), str(dest), linked.options, chunk_size=CHUNK, require_published=True,
                       progress=False)
    _published(dest, hashes)
    assert report.files_verified == 1 and report.bytes_sent == 48 << 20
    assert max(lanes) >= 3 and linked.most >= 3
    assert report.mb_per_s * 1e6 > 2 * FLOW, report


def test_a_cut_mid_pull_reconnects_and_resumes_from_what_arrived(tmp_path, fast_linked, monkeypatch):
    # model.bin outlasts what one file may have in flight (FILE_PENDING pieces) past the cut at 8 MiB:
    # part of it is still to come over the link when the cut lands, however fast the pieces came before
    there, hashes = _published_there(tmp_path, {"model.bin": 48 << 20, "shards/a.bin": 6 << 20, "c.json": 300})
    readers: list[tuple[str, int]] = []
    reader = ranges.RangedReader.__init__

    def recorded(self, pool, path, offset, size, first):
        readers.append((Path(path).name, offset))
        reader(self, pool, path, offset, size, first)

    monkeypatch.setattr(ranges.RangedReader, "__init__", recorded)
    dest = tmp_path / "dest"
    part = dest / STAGING_NAME / "files" / "model.bin.part"
    report, arrived = cut_mid_copy(fast_linked, part, holds_more(part, 8 << 20),
                                   lambda: sync.copy(fast_linked.url(there), str(dest), fast_linked.options,
                                                     chunk_size=CHUNK, require_published=True, progress=False))
    _published(dest, hashes)
    assert report.files_verified == 3
    resumed = [at for name, at in readers if name == "model.bin"]
    # read again over the link only from what had arrived: the part's hash came from this disk
    assert len(resumed) >= 2 and resumed[0] == 0 and resumed[-1] >= arrived, readers


def test_a_width_is_learnt_once_read_at_it_and_kept_a_day_for_its_server(monkeypatch):
    now, clock = [0.0], [1e9]
    monkeypatch.setattr(width.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(width.time, "time", lambda: clock[0])
    w = width.Width(cap=16, start=8)
    w.live = lambda: w.target
    assert w.learnt is None  # nothing read yet
    now[0] += 1.0
    w.sent(int(8e6))  # each of the 8 carries its share: it doubles, unread at 16 yet
    assert (w.target, w.learnt) == (16, None)
    now[0] += 1.0
    w.sent(int(12e6))
    assert w.learnt == 16
    w.back_off()
    assert w.learnt is None  # halved on a failure: nothing learnt at 8
    near = width.Width(cap=16, start=8)
    near.live = lambda: near.target
    near.round_trip(0.0005)  # loopback: a climb there costs milliseconds, and nothing is kept
    for mb in (100, 200, 200):
        now[0] += 1.0
        near.sent(int(mb * 1e6), 0.01)
    assert near.history and near.target == 16 and near.piece == width.PIECE
    assert near.learnt is None

    assert width.remembered_width("far.example:22") is None
    width.remember_width("far.example:22", 16)
    width.remember_width("near.example:2222", 4)
    assert (width.remembered_width("far.example:22"), width.remembered_width("near.example:2222")) == (16, 4)
    clock[0] += width.REMEMBERED + 1  # a day on, the link is learnt again
    assert width.remembered_width("far.example:22") is None
    (data_dir() / width.WIDTHS_FILE).write_text("{not json")  # a damaged record is no width, and is replaced
    assert width.remembered_width("far.example:22") is None
    width.remember_width("far.example:22", 8)
    assert width.remembered_width("far.example:22") == 8


def test_the_next_copy_to_a_server_starts_at_the_width_the_last_one_learnt(tmp_path, linked):
    src = tmp_path / "src"
    hashes = make_tree(src, {"model.bin": 24 << 20})
    sync.copy(str(src), linked.url(tmp_path / "a"), dest_options=linked.options, chunk_size=CHUNK, progress=False)
    _published(tmp_path / "a", hashes)
    server = f"127.0.0.1:{linked.link.port}"
    assert width.remembered_width(server) is not None  # the copy's width, read at least once on a far link
    width.remember_width(server, 3)  # one the link could not have taught, to tell it from START
    assert resolve(linked.url(tmp_path / "b"), linked.options).streams.width.target == 3

    assert resolve(str(tmp_path / "c"), None).streams is None  # a local folder has no width


def test_pieces_are_small_where_a_connections_queue_would_hold_requests_long_and_big_on_a_near_link():
    # every request on a connection (a file's open, close, rename) waits behind the pieces queued on it
    far = width.Width(cap=16)
    assert far.piece == width.FAR_PIECE  # nothing timed yet
    far.round_trip(0.150)  # a file's open took a border round trip
    assert far.piece == width.FAR_PIECE
    for _ in range(20):
        far.sent(width.FAR_PIECE, 0.6)  # border x 0.25: a quarter MiB confirmed in 0.6 s, queue included
    assert far.piece == width.FAR_PIECE

    near = width.Width(cap=16)
    near.round_trip(0.0005)  # loopback
    assert near.piece == width.PIECE
    for _ in range(20):
        near.sent(width.PIECE, 0.05)
    assert near.piece == width.PIECE
    for _ in range(20):
        near.sent(width.PIECE, 2.0)  # the link got slow: a 1 MiB piece now takes 2 s
    assert near.piece == width.FAR_PIECE
    near.sent(1000, 0.0001)  # a file's short last piece says nothing of the queue
    assert near.piece == width.FAR_PIECE
    near.back_off()  # a cut: timed again from the next open
    near.round_trip(0.0005)
    assert near.piece == width.PIECE
