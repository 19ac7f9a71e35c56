"""The event log rolled into segments, on real files: no file grows past a segment's size, every
reader crosses segments in order with nothing lost or doubled, a reader mid-segment when the
writer rolls goes on into the next one, and a log written before segments reads as before."""
from __future__ import annotations

import asyncio
import json
import os
import struct
import threading
from pathlib import Path

import pytest

from jupyter_split import aio
from jupyter_split.config import parse_config
from jupyter_split.core import replay
from jupyter_split.executors import executor_for
from jupyter_split.runs import events as log_module
from jupyter_split.runs.events import EVENTS_FILE, INDEX_FILE, EventLog, iter_events, last_seq, read_index, tail_events
from jupyter_split.runs.segments import ENTRY, Cursor, index_entries, read_local, segment_name

SEGMENT = 4096


def _line(i: int) -> str:
    return f"line {i}\n"


def _write(run_dir: Path, count: int, final: bool = True, segment: int = SEGMENT) -> EventLog:
    log = EventLog(run_dir, segment_bytes=segment)
    for i in range(count):
        log.append("stream", name="stdout", text=_line(i))
    if final:
        log.append("status", state="succeeded", final=True)
    return log


def _segments(run_dir: Path) -> list[Path]:
    found, k = [], 0
    while (run_dir / segment_name(k)).exists():
        found.append(run_dir / segment_name(k))
        k += 1
    return found


def _seqs(events) -> list[int]:
    return [e["seq"] for e in events]


@pytest.fixture
def small_index(monkeypatch):
    """Index entries every 512 bytes, so a segment holds several besides its first."""
    monkeypatch.setattr(log_module, "INDEX_EVERY", 512)


def test_a_long_log_rolls_into_segments_each_indexed_from_its_first_record(tmp_path, small_index):
    _write(tmp_path, 5000).close()
    files = _segments(tmp_path)
    assert len(files) > 50
    assert {p.name for p in tmp_path.glob("events*.jsonl")} == {p.name for p in files}, "no gap in the numbering"
    widest = max(len(json.dumps({"seq": 5001, "t": 0.0, "type": "stream", "name": "stdout", "text": _line(4999)})), 100)
    assert all(p.stat().st_size <= SEGMENT + widest for p in files), "a segment passes its size by one record at most"
    entries = index_entries((tmp_path / INDEX_FILE).read_bytes())
    firsts = {segment: seq for seq, segment, offset in reversed(entries) if offset == 0}
    assert sorted(firsts) == list(range(1, len(files))), "each rolled segment's first seq is in the index"
    for seq, segment, offset in entries:
        data = files[segment].read_bytes()
        assert json.loads(data[offset:data.index(b"\n", offset)])["seq"] == seq
    for segment, seq in firsts.items():  # a segment starts right after the one before ends
        assert json.loads(files[segment - 1].read_text().splitlines()[-1])["seq"] == seq - 1


def test_replay_from_any_seq_and_tail_cross_segments_once_each(tmp_path, small_index, monkeypatch):
    monkeypatch.setattr(log_module, "CHUNK", 300)  # reads smaller than a segment, so some end mid-segment
    _write(tmp_path, 3000).close()
    entries = index_entries((tmp_path / INDEX_FILE).read_bytes())
    starts = [seq for seq, _, offset in entries if offset == 0]
    assert _seqs(iter_events(tmp_path)) == list(range(1, 3002))
    for after in [0, 1, 1499, starts[3] - 2, starts[3] - 1, starts[3], starts[-1] - 1, 3000, 3001, 5000]:
        assert _seqs(iter_events(tmp_path, after)) == list(range(after + 1, 3002)), after
    for count in [1, 2, 60, 200, 3001, 4000]:  # more than a segment holds: the tail spans several
        assert _seqs(tail_events(tmp_path / EVENTS_FILE, count)) == list(range(max(1, 3002 - count), 3002)), count
    assert last_seq(tmp_path) == 3001


def test_a_requeued_writer_goes_on_in_the_newest_segment_even_one_just_started(tmp_path):
    log = _write(tmp_path, 500, final=False)
    before = len(_segments(tmp_path))
    log.close()
    again = EventLog(tmp_path, segment_bytes=SEGMENT)
    assert again.seq == 500 and again.segment == before - 1
    again.append("stream", name="stdout", text="again\n")
    again.close()
    assert _seqs(iter_events(tmp_path, 499)) == [500, 501]
    # the writer died between starting a segment (the file and its index entry) and its first record
    nxt = again.segment + 1
    (tmp_path / segment_name(nxt)).touch()
    with open(tmp_path / INDEX_FILE, "ab") as index:
        index.write(struct.pack("<QQ", 502, nxt << 40))
    assert _seqs(tail_events(tmp_path / EVENTS_FILE, 2)) == [500, 501]
    assert _seqs(iter_events(tmp_path, 499)) == [500, 501]
    with open(tmp_path / INDEX_FILE, "ab") as index:  # and a torn entry (a write cut short): cut off on reopening
        index.write(b"\x01\x02\x03")
    third = EventLog(tmp_path, segment_bytes=SEGMENT)
    assert (third.seq, third.segment) == (501, nxt) and (tmp_path / INDEX_FILE).stat().st_size % ENTRY.size == 0
    third.append("status", state="succeeded", final=True)
    third.close()
    assert _seqs(iter_events(tmp_path, 499)) == [500, 501, 502]


def test_a_log_written_before_segments_reads_as_before_and_a_short_new_one_is_that_format(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    lines, index, at = [], b"", 0
    for seq in range(1, 2001):  # the earlier writer: one file, (seq, byte offset) entries
        line = json.dumps({"seq": seq, "t": 0.0, "type": "stream", "name": "stdout", "text": _line(seq)}) + "\n"
        if seq % 300 == 0:
            index += struct.pack("<QQ", seq, at)
        lines.append(line)
        at += len(line)
    (old / EVENTS_FILE).write_text("".join(lines))
    (old / INDEX_FILE).write_bytes(index)
    assert _seqs(iter_events(old, 1234)) == list(range(1235, 2001))
    assert _seqs(tail_events(old / EVENTS_FILE, 3)) == [1998, 1999, 2000]
    again = EventLog(old)  # a requeued job of such a run appends to the same file
    again.append("stream", name="stdout", text="more\n")
    again.close()
    assert _seqs(iter_events(old, 1999)) == [2000, 2001] and not (old / segment_name(1)).exists()

    new = tmp_path / "new"
    log = EventLog(new)
    for i in range(30_000):
        log.append("stream", name="stdout", text=_line(i))
    log.close()
    data = (new / EVENTS_FILE).read_bytes()
    assert _segments(new) == [new / EVENTS_FILE] and read_index((new / INDEX_FILE).read_bytes())
    for seq, where in read_index((new / INDEX_FILE).read_bytes()):  # what an earlier reader expects
        assert json.loads(data[where:data.index(b"\n", where)])["seq"] == seq


def _step(cursor: Cursor, run_dir: Path) -> tuple[list[dict], bool]:
    return cursor.receive(read_local(run_dir, cursor.request()))


def _until_end(cursor: Cursor, run_dir: Path) -> list[int]:
    seen = []
    while True:
        events, at_end = _step(cursor, run_dir)
        seen += _seqs(events)
        if at_end:
            return seen


def test_a_reader_at_a_segments_end_when_the_writer_rolls_goes_on_with_nothing_lost(tmp_path):
    log = _write(tmp_path, 10, final=False)
    cursor = Cursor(0, 1 << 20)
    assert _until_end(cursor, tmp_path) == list(range(1, 11))
    # the writer fills this segment, rolls twice, and writes on, all while the reader waits
    for i in range(10, 200):
        log.append("stream", name="stdout", text=_line(i))
    assert log.segment >= 2
    assert _until_end(cursor, tmp_path) == list(range(11, 201))

    # the race: the reader reads to this segment's end, then, before it asks the index whether the
    # writer rolled, the writer adds to this segment and rolls: it must read this segment's tail
    # once more, then move on
    for _ in range(3):
        rolled_from = log.segment
        events, at_end = _step(cursor, tmp_path)
        assert (events, at_end) == ([], False) and cursor.request() == (INDEX_FILE, -ENTRY.size, None)
        first = log.seq + 1
        while log.segment == rolled_from:
            log.append("stream", name="stdout", text="x" * 90 + "\n")
        log.append("stream", name="stdout", text="after the roll\n")
        assert _until_end(cursor, tmp_path) == list(range(first, log.seq + 1))
    log.close()


def test_readers_while_the_writer_rolls_get_every_record_once_in_order(tmp_path, small_index):
    total, done = 20_000, threading.Event()
    seen: dict[str, list[int]] = {}

    def write() -> None:
        log = EventLog(tmp_path, segment_bytes=SEGMENT)
        for i in range(total):
            log.append("stream", name="stdout", text=_line(i))
        log.append("status", state="succeeded", final=True)
        log.close()
        done.set()

    def follow(name: str, after: int) -> None:  # a follower polling the files, as the runner's replay does
        cursor, got = Cursor(after, 700), []
        while not (got and got[-1] == total + 1):
            events, at_end = _step(cursor, tmp_path)
            got += _seqs(events)
            if at_end and not events:
                done.wait(0.001)
        seen[name] = got

    def again_and_again() -> None:  # fresh readers from many places while the log grows and rolls
        starts = 0
        while not done.is_set() or starts < 5:
            after = starts * 997 % max(1, last_seq(tmp_path))
            got = _seqs(iter_events(tmp_path, after))
            assert got == list(range(after + 1, after + 1 + len(got))), after
            tail = _seqs(tail_events(tmp_path / EVENTS_FILE, 75))
            assert tail == list(range(tail[0], tail[0] + len(tail))) if tail else True
            starts += 1
        seen["again"] = [starts]

    threads = [threading.Thread(target=write), threading.Thread(target=follow, args=("zero", 0)),
               threading.Thread(target=follow, args=("late", 5)), threading.Thread(target=again_and_again)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert seen["zero"] == list(range(1, total + 2))
    assert seen["late"] == list(range(6, total + 2))
    assert seen["again"][0] >= 5
    assert len(_segments(tmp_path)) > 100


def test_the_clients_reader_follows_a_rolling_log_through_the_local_executor(tmp_path, small_index, monkeypatch):
    monkeypatch.setattr(replay, "CHUNK", 1000)
    monkeypatch.setattr(replay, "TAIL_SPAN", 256)
    config = parse_config({"sites": {"home": {"jurisdiction": "CN"}, "abroad": {"jurisdiction": "SG"}}}, "test")
    ex = executor_for(config.sites["home"], config)
    total = 6000
    log = EventLog(tmp_path, segment_bytes=SEGMENT)

    async def follow() -> list[int]:
        reader, got = replay.LogReader(ex, str(tmp_path)), []
        while not (got and got[-1] == total + 1):
            events, at_end = await reader.chunk()
            got += _seqs(events)
            if at_end and not events:
                await asyncio.sleep(0.001)
        return got

    following = aio.submit(follow())
    for i in range(total):
        log.append("stream", name="stdout", text=_line(i))
        if i % 500 == 0:
            os.sched_yield()
    log.append("status", state="succeeded", final=True)
    log.close()
    assert following.result(60) == list(range(1, total + 2))

    async def read(after: int, count: int) -> tuple[list[int], list[int]]:
        return (_seqs([e async for e in replay.stream(ex, str(tmp_path), after)]),
                _seqs(await replay.tail(ex, str(tmp_path), count)))

    streamed, tailed = aio.run(read(3333, 250))
    assert streamed == list(range(3334, total + 2)) and tailed == list(range(total + 2 - 250, total + 2))


def test_a_reader_asking_again_from_its_last_seq_reads_only_what_came_since(tmp_path):
    """The sidebar's panel polls through the server from the last seq it has: each poll reads the
    news, not the index entry's MiB before it nor the index, however long the log."""
    config = parse_config({"sites": {"home": {"jurisdiction": "CN"}, "abroad": {"jurisdiction": "SG"}}}, "test")
    ex = executor_for(config.sites["home"], config)
    log = _write(tmp_path, 60_000, final=False, segment=1 << 20)
    assert len(_segments(tmp_path)) > 3
    read: list[int] = []
    real = ex.read_file

    async def counted(path: str, offset: int = 0, size: int | None = None) -> bytes:
        data = await real(path, offset, size)
        read.append(len(data))
        return data

    ex.read_file = counted

    async def poll(after: int, limit: int) -> list[dict]:
        got = []
        async for event in replay.stream(ex, str(tmp_path), after):
            got.append(event)
            if len(got) == limit:
                break
        return got

    first = aio.run(poll(59_000, 2000))  # the panel's first look, from near the end: through the index
    assert _seqs(first) == list(range(59_001, 60_001))
    for i in range(3):
        news = [log.append("stream", name="stdout", text=f"news {i}.{k}\n") for k in range(5)]
        read.clear()
        assert aio.run(poll(_seqs(first)[-1], 2000)) == news
        assert sum(read) < 1000, read  # the five records and an index entry
        first = news
    big = [log.append("stream", name="stdout", text=_line(k)) for k in range(3000)]  # a page cut by the limit
    page = aio.run(poll(first[-1]["seq"], 2000))
    assert page == big[:2000]
    read.clear()
    assert aio.run(poll(page[-1]["seq"], 2000)) == big[2000:]
    assert sum(read) < 300_000, "at most the chunk the last page was cut from"
    log.close()
