"""Sync at the link's width: over a link that caps each flow, a push to SFTP uses several SSH
connections (big files spread over them, one big file in ranges across them) and goes well
above one flow's cap; a cut mid-copy reconnects, resumes each file where the server confirmed
it, and publishes a whole, verified checkpoint with no user action."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from jupyter_split import sync
from jupyter_split.config import ConfigError, SyncOptions, load_config, parse_config
from jupyter_split.sync import stream, width
from jupyter_split.sync.manifest import STAGING_NAME, read_manifest
from jupyter_split.sync.fsutil import resolve

from tests.services.link import start_link
from tests.sync.test_local import make_tree, tree_hashes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("split_home")]

FLOW = 1.5e6   # one flow's cap, each way (bytes a second)
RTT = 0.08
CHUNK = 1 << 20  # files of RANGED_MIN_CHUNKS chunks or more go in ranges


class Linked:
    """The test sshd behind a link that holds each connection to FLOW and all of them to 4 x FLOW."""

    def __init__(self, sshd, root: Path, **overrides):
        self.sshd = sshd
        spec = {"flow_rate": FLOW, "rate": 4 * FLOW, "delay": RTT / 2, "jitter": 0.001, **overrides}
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
    lanes = []
    opened = width.RangedWriter._add_lane

    def add_lane(self):
        opened(self)
        lanes.append(len(self._lanes))

    monkeypatch.setattr(width.RangedWriter, "_add_lane", add_lane)
    report = sync.copy(str(src), linked.url(dest), dest_options=linked.options, chunk_size=CHUNK, progress=False)
    _published(dest, hashes)
    assert max(lanes) >= 3 and linked.most >= 3
    assert report.mb_per_s * 1e6 > 2 * FLOW, report


def test_the_width_is_capped_by_the_config(tmp_path, linked):
    src, dest = tmp_path / "src", tmp_path / "dest"
    hashes = make_tree(src, {"model.bin": 6 << 20})
    config = load_config().model_copy(update={"sync": SyncOptions(max_connections=1)})
    sync.copy(str(src), linked.url(dest), dest_options=linked.options, chunk_size=CHUNK, progress=False, config=config)
    _published(dest, hashes)
    assert linked.most == 1


def test_a_cut_mid_copy_reconnects_and_resumes_each_file(tmp_path, linked, monkeypatch):
    src, dest = tmp_path / "src", tmp_path / "dest"
    hashes = make_tree(src, {"model.bin": 20 << 20, "shards/a.bin": 6 << 20, "shards/b.bin": 6 << 20, "c.json": 300})
    starts: list[tuple[str, int]] = []
    send = stream.send_file

    def recorded(plan, item, **kwargs):
        starts.append((item.rel, item.resume_from))
        return send(plan, item, **kwargs)

    monkeypatch.setattr(stream, "send_file", recorded)
    done: dict = {}

    def run() -> None:
        try:
            done["report"] = sync.copy(str(src), linked.url(dest), dest_options=linked.options, chunk_size=CHUNK,
                                       progress=False)
        except Exception as exc:
            done["error"] = exc

    copy = threading.Thread(target=run)
    copy.start()
    part = dest / STAGING_NAME / "files" / "model.bin.part"
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size > 12 << 20) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert part.exists(), "the big file never started"
    linked.link.cut()
    copy.join(40)
    assert not copy.is_alive() and "report" in done, str(done.get("error"))
    _published(dest, hashes)
    resumed = [at for rel, at in starts if rel == "model.bin"]
    assert len(resumed) >= 2 and resumed[-1] >= 1 << 20  # resumed where the server confirmed it, not from 0


def test_max_connections_out_of_range_is_a_clear_config_error():
    home = {"home": {"jurisdiction": "DE"}, "abroad": {"jurisdiction": "SG"}}
    for bad in (0, 65, "many"):
        with pytest.raises(ConfigError, match=r"sync\.max_connections"):
            parse_config({"sites": home, "sync": {"max_connections": bad}}, "test")
    assert parse_config({"sites": home, "sync": {"max_connections": 3}}, "test").sync.max_connections == 3


def test_the_width_grows_while_throughput_grows_and_halves_on_a_stall(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(width.time, "monotonic", lambda: now[0])
    w = width.Width(cap=5)
    live = [2]
    w.live = lambda: live[0]

    def second(mb: float) -> int:
        now[0] += 1.0
        w.sent(int(mb * 1e6))
        live[0] = w.target  # the connections asked for open before the next second
        return w.target

    assert w.target == 2
    assert [second(mb) for mb in (3, 3, 4.5, 6, 6.2)] == [3, 4, 5, 5, 5]  # +1 while it pays, then the cap
    assert second(2) == 2  # a second under half the one before: a stall
    live[0] = 1
    assert second(9) == 2  # not judged while the connections asked for are still opening
    w.back_off()
    assert w.target == 1
