"""A copy between two remote ends keeps both links busy: a far source's bytes go on as they arrive,
and the next file is read while the one before it is still being sent.

Each test makes one side wait for the other with an event (never a clock), so the order it checks
is the only one that can pass: a copy that read a whole range before handing it on, or that held
a file's place until its last byte was confirmed, waits on its own event and fails.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from jupyter_split import sync
from jupyter_split.sync import arrived, s3read, stream

from tests.sync.test_local import make_tree, tree_hashes

pytestmark = pytest.mark.usefixtures("split_home")

WAIT = 30  # seconds an event is waited for at most: only a copy in the wrong order waits that long


def test_a_far_objects_ranges_are_handed_on_as_they_arrive(s3, monkeypatch):
    """The first bytes of a ranged GET reach the reader while the GET is still arriving."""
    s3.make_bucket("streamed")
    fs = s3.filesystem()
    data = os.urandom(12 << 20)
    fs.pipe_file("streamed/big.bin", data)
    handed_on = threading.Event()
    put = arrived.Range.put

    def held_put(piece, chunk: bytes) -> bool:
        more = put(piece, chunk)
        if piece.first == 0 and piece.got >= s3read.CHUNK:
            # the rest of the first range waits (on the loop's thread) until the reader got bytes
            handed_on.wait(WAIT)
        return more

    monkeypatch.setattr(arrived.Range, "put", held_put)
    with s3read.S3Ranges(fs, "streamed/big.bin", len(data)) as ranges:
        first = ranges.read1(8 << 20)
        assert first and not ranges._flight[0].future.done(), "the first range ended before its bytes went on"
        handed_on.set()
        chunks = [first]
        while chunk := ranges.read1(8 << 20):
            chunks.append(chunk)
    assert b"".join(chunks) == data


def test_the_next_file_is_read_while_the_one_before_is_still_being_sent(tmp_path, monkeypatch):
    """With one file read at a time, the second file's read starts while the first one's writer
    is still closing (over a far link: waiting for the server to confirm its last pieces)."""
    src = tmp_path / "src"
    make_tree(src, {"a.bin": 3 << 20, "b.bin": 3 << 20})
    second_opened = threading.Event()
    waited: list[bool] = []
    open_source, open_writer = stream._open_source, stream._open_writer

    def opened(side, item, chunk, offset):
        if item.rel == "b.bin":
            second_opened.set()
        return open_source(side, item, chunk, offset)

    class Closing:
        """The first file's writer: its close waits for the second file's read to start."""

        def __init__(self, inner):
            self._inner = inner

        def write(self, data):
            return self._inner.write(data)

        def close(self):
            waited.append(second_opened.wait(WAIT))
            self._inner.close()

    def writer(dest, target, offset, chunk):
        inner = open_writer(dest, target, offset, chunk)
        return Closing(inner) if target.endswith("a.bin") else inner

    monkeypatch.setattr(stream, "_open_source", opened)
    monkeypatch.setattr(stream, "_open_writer", writer)
    report = sync.copy(str(src), str(tmp_path / "dest"), concurrency=1, chunk_size=1 << 20, progress=False)
    assert report.files_sent == 2 and tree_hashes(tmp_path / "dest") == tree_hashes(src)
    assert waited == [True], "the second file waited for the first to be confirmed before it was read"


def test_the_oldest_objects_read_have_the_most_ranges_in_flight(s3, monkeypatch):
    """Objects read at once end one by one, the oldest first, so the next ones' reads do not all
    begin together: the two oldest have AHEAD ranges in flight, one fewer for each two after."""
    monkeypatch.setattr(s3read, "_READING", s3read._Reading())  # (no reader of another test counts)
    s3.make_bucket("ranked")
    fs = s3.filesystem()
    size = 24 << 20
    for i in range(6):
        fs.pipe_file(f"ranked/{i}.bin", bytes([i]) * size)
    readers = [s3read.S3Ranges(fs, f"ranked/{i}.bin", size) for i in range(6)]
    try:
        for reader in readers:
            reader._fill()
        assert [len(r._flight) for r in readers] == [4, 4, 3, 3, 2, 2]
        readers[0].close()  # the oldest ends: each after it moves up
        for reader in readers[1:]:
            reader.read(1 << 20)
        assert [len(r._flight) for r in readers[1:]] == [4, 4, 3, 3, 2]
        assert readers[1].read(size) == bytes([1]) * (size - (1 << 20))
    finally:
        for reader in readers:
            reader.close()


def test_an_objects_last_bytes_are_spread_over_the_ranges_it_may_still_ask_for(s3, monkeypatch):
    """The end of an object does not ride one flow: once the objects read before it end, the rest
    of it is asked for in ranges of about one size, as many as it may have in flight."""
    monkeypatch.setattr(s3read, "_READING", s3read._Reading())
    s3.make_bucket("spread")
    fs = s3.filesystem()
    size, older = 6 << 20, 40 << 20  # (the older ones are still asking when the fifth begins)
    for i in range(5):
        fs.pipe_file(f"spread/{i}.bin", bytes([i]) * (size if i == 4 else older))
    readers = [s3read.S3Ranges(fs, f"spread/{i}.bin", size if i == 4 else older) for i in range(5)]
    youngest = readers[-1]
    made: list[tuple[int, int]] = []  # (first, last) of every range as it was asked for
    new_range = arrived.Range.__init__

    def asked_range(piece, first: int, last: int, cond) -> None:
        new_range(piece, first, last, cond)
        made.append((first, last))

    monkeypatch.setattr(arrived.Range, "__init__", asked_range)
    try:
        assert len(youngest._flight) == 2  # the fifth read: 2 ranges in flight
        for reader in readers[:-1]:
            reader.close()
        assert youngest.read(1 << 20) == bytes([4]) * (1 << 20)
        # its first two ranges (512 KiB, 1 MiB) were asked before; the rest once it was the oldest (and
        # then, as its ranges end, halves of the ones with the most to come: after these)
        rest = [(first, last) for first, last in made if first >= 3 * s3read.START_RANGE][:s3read.AHEAD - 1]
        asked = [last - first + 1 for first, last in rest]
        assert len(asked) == s3read.AHEAD - 1 and max(asked) < s3read.RANGE, asked
        assert rest[0][0] == 3 * s3read.START_RANGE and rest[-1][1] == size - 1, \
            "the rest of the object is asked for (its length from the first answer)"
        assert max(asked) - min(asked) <= 1, f"the rest is not spread: {asked}"
        assert youngest.read(size) == bytes([4]) * (size - (1 << 20))
    finally:
        for reader in readers:
            reader.close()


def test_a_files_pieces_go_out_on_its_first_lane_while_its_other_lanes_open(tmp_path, sshd, monkeypatch):
    """A big file written to an SFTP server over several connections sends its first pieces on the
    connection it opened first, while its opens on the others are still under way (a fresh
    connection's first open waits for its sessions: round trips on a far link)."""
    from jupyter_split.sync import sftp_files

    from tests.sync.test_remote import sftp_options, sftp_url

    src = tmp_path / "src"
    hashes = make_tree(src, {"model.bin": 24 << 20})
    confirmed = threading.Event()
    opened: set[str] = set()
    waited: list[bool] = []
    open_file, write_at = sftp_files.SftpStreams.open, sftp_files.SftpFile.write_at

    def held_open(streams, path, offset=0, *, read=False):
        if path in opened:  # a lane after the first: held until a piece of the file was confirmed
            waited.append(confirmed.wait(WAIT))
        opened.add(path)
        return open_file(streams, path, offset, read=read)

    def watched_write(lane, data, offset):
        piece = write_at(lane, data, offset)
        piece.add_done_callback(lambda done: done.exception() is None and confirmed.set())
        return piece

    monkeypatch.setattr(sftp_files.SftpStreams, "open", held_open)
    monkeypatch.setattr(sftp_files.SftpFile, "write_at", watched_write)
    dest = tmp_path / "dest"
    sync.copy(str(src), sftp_url(sshd, dest), dest_options=sftp_options(sshd), chunk_size=1 << 20, progress=False)
    assert tree_hashes(dest) == hashes
    assert waited and all(waited), "the file's pieces waited for every lane to open"


def test_the_lanes_of_files_sent_together_open_together(tmp_path, sshd, monkeypatch):
    """Big files sent together each open on every connection of the width at once, and together:
    not OPENING opens at a time for all of them (over a far link a round trip for each OPENING: the
    last files' lanes joined seconds after the first's)."""
    from jupyter_split.sync import sftp_files, width

    from tests.sync.test_remote import sftp_options, sftp_url

    src = tmp_path / "src"
    hashes = make_tree(src, {f"model-{i}.bin": 24 << 20 for i in range(3)})
    opened: set[str] = set()
    turns = threading.Condition()
    held = {"now": 0, "most": 0}
    open_file = sftp_files.SftpStreams.open

    def held_open(streams, path, offset=0, *, read=False):
        if path in opened:  # a lane after a file's first: held until more than OPENING are held at once
            with turns:
                held["now"] += 1
                held["most"] = max(held["most"], held["now"])
                turns.notify_all()
                turns.wait_for(lambda: held["most"] > width.OPENING, timeout=2)
                held["now"] -= 1
        opened.add(path)
        return open_file(streams, path, offset, read=read)

    monkeypatch.setattr(sftp_files.SftpStreams, "open", held_open)
    dest = tmp_path / "dest"
    sync.copy(str(src), sftp_url(sshd, dest), dest_options=sftp_options(sshd), chunk_size=1 << 20, progress=False)
    assert tree_hashes(dest) == hashes
    assert held["most"] > width.OPENING, f"at most {held['most']} lane opens were under way at once"


class Body:
    """A ranged GET's body passed on, its first CHUNK as it comes; then `after_chunk()` (a coroutine)
    runs before each read, and ends the body where it answers True."""

    def __init__(self, body, after_chunk):
        self.body, self.sent, self._after_chunk = body, 0, after_chunk

    async def read(self, size: int = -1) -> bytes:
        if self.sent >= s3read.CHUNK and await self._after_chunk():
            return b""
        chunk = await self.body.read(size if self.sent >= s3read.CHUNK else min(size, s3read.CHUNK - self.sent))
        self.sent += len(chunk)
        return chunk

    def close(self) -> None:
        self.body.close()


def on_ranged_gets(fs, monkeypatch, seen) -> None:
    """Call `seen(first, last, answer)` (on the loop's thread) with every ranged GET's answer, which it
    may change."""
    call = fs._call_s3

    async def watched(method, *args, **kwargs):
        answer = await call(method, *args, **kwargs)
        if method == "get_object" and "Range" in kwargs:
            first, last = map(int, kwargs["Range"].removeprefix("bytes=").split("-"))
            seen(first, last, answer)
        return answer

    monkeypatch.setattr(fs, "_call_s3", watched)


def test_an_objects_last_ranges_are_cut_in_two_for_the_flows_that_ended(s3, monkeypatch):
    """Once all of an object is asked for, a range that ends gives its place to half of the range with
    the most still to come: a slow range at an object's end is not waited for on its one flow."""
    import asyncio

    s3.make_bucket("cut")
    fs = s3.filesystem()
    data = os.urandom(6 << 20)
    fs.pipe_file("cut/big.bin", data)
    asked: list[tuple[int, int]] = []
    released = asyncio.Event()
    timed_out: list[bool] = []

    # the object's fourth range (after 512 KiB, 1 MiB and 2 MiB ones): after its first CHUNK, held
    # until a GET asks for part of it
    start = 3 * s3read.START_RANGE + s3read.RANGE
    held_range: list[tuple[int, int]] = []

    async def held() -> bool:
        if not released.is_set():
            try:
                await asyncio.wait_for(released.wait(), WAIT)
            except asyncio.TimeoutError:
                timed_out.append(True)
        return False

    def seen(first: int, last: int, answer: dict) -> None:
        asked.append((first, last))
        if first == start:
            held_range.append((first, last))
            answer["Body"] = Body(answer["Body"], held)
        elif held_range and start < first <= held_range[0][1]:
            released.set()  # (on the loop's thread, as the held body waits)

    on_ranged_gets(fs, monkeypatch, seen)
    with s3read.S3Ranges(fs, "cut/big.bin", len(data)) as ranges:
        chunks = []
        while chunk := ranges.read1(8 << 20):
            chunks.append(chunk)
    assert b"".join(chunks) == data
    assert held_range == [(start, start + s3read.RANGE - 1)], asked
    assert not timed_out, f"the held range was waited for on its own flow; ranges asked: {asked}"


def test_a_ranged_get_that_ends_short_mid_object_fails_the_read(s3, monkeypatch):
    """A range whose body ends before its last byte (mid-object) fails the read: the bytes of the next
    range are not taken as following on (a gap no size check would see in a shard of the same size)."""
    s3.make_bucket("short")
    fs = s3.filesystem()
    data = os.urandom(6 << 20)
    fs.pipe_file("short/big.bin", data)

    async def ends() -> bool:
        return True

    def seen(first: int, last: int, answer: dict) -> None:
        if first == s3read.START_RANGE:  # the object's second range ends after its first CHUNK
            answer["Body"] = Body(answer["Body"], ends)

    on_ranged_gets(fs, monkeypatch, seen)
    with s3read.S3Ranges(fs, "short/big.bin", len(data)) as ranges, pytest.raises(OSError, match="ended after"):
        while ranges.read1(8 << 20):
            pass

