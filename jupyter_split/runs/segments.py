"""The event log's files: a long run's log is rolled into segments, so no file grows without bound.

`events.jsonl` is the first segment. When the segment being written passes the site's
`[runs] log_segment_bytes` (64 MiB by default), the writer goes on in `events.000001.jsonl`,
then `events.000002.jsonl`, ... A log that never rolled is exactly the single file earlier
versions wrote (and read). Segments are only ever appended to, never renamed or rewritten, so
a reader's place (a segment and a byte in it) stays good while the writer rolls.

`events.idx` indexes all of them: 16-byte entries (seq, where), `where` holding the segment in
its high bits and the byte where the record of `seq` starts in that segment in its low
OFFSET_BITS; in a log that never rolled the segment is 0, so `where` is the byte offset alone,
the earlier format. Besides an entry every INDEX_EVERY bytes of a segment, each roll writes one
for the new segment's first record: the index says which segment holds which `seq`, and its
last entry names the segment being written.

The writer rolls in an order that lets readers cross without a lock: the old segment is whole,
then the new one exists, then its index entry is written, then its first record. So a reader at
the end of segment K that knew of segment K+1 *before* that read has all of K; one that did not
asks the index again and, if K+1 has appeared, reads K to its end once more before moving on:
nothing is lost or doubled.

The reading is the same on every machine: `Cursor` (forward from any `seq`) and `tail_plan`
(the last N records, back from the end) name the bytes of which file to read next and make
records of them; the caller does the reading, from local files (`read_local`: the runner) or
through an executor's `read_file` (`core.replay`: the client).
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any, Generator, Optional, Tuple, TypeVar

from ..protocol import TERMINAL_STATES

EVENTS_FILE = "events.jsonl"
INDEX_FILE = "events.idx"
#: a new segment once the one being written holds this much (the default of `[runs] log_segment_bytes`)
SEGMENT_BYTES = 64 << 20
#: readers take a segment this much at a time
CHUNK = 1 << 20
#: the first read back from a segment's end; it grows fourfold until it holds the records asked for
TAIL_SPAN = 1 << 16
#: the first read back from the index's end when looking for where a `seq` is: 256 entries, at
#: least 256 MiB of log, so a reader near the end (a poller) never reads the whole index
INDEX_SPAN = 256 * 16
#: the low bits of an index entry's `where`: the byte in its segment (a segment stays far below 1 TiB)
OFFSET_BITS = 40
ENTRY = struct.Struct("<QQ")

#: a place in a log: (the highest `seq` certainly written before it, segment, byte offset in that
#: segment, the newest segment known there); a reader may start at it for any `after` at or above that seq
Place = Tuple[int, int, int, int]
#: a read a plan asks for: (a file of the run directory, the byte to start at (below 0: that many
#: bytes before its end), how many bytes (None: to its end))
Read = Tuple[str, int, Optional[int]]
Result = TypeVar("Result")


def segment_name(segment: int) -> str:
    """The file of segment `segment`: `events.jsonl` for the first, then `events.000001.jsonl`, ..."""
    return EVENTS_FILE if segment == 0 else f"events.{segment:06d}.jsonl"


def index_entry(seq: int, segment: int, offset: int) -> bytes:
    """One `events.idx` entry: the record of `seq` starts at byte `offset` of segment `segment`."""
    return ENTRY.pack(seq, segment << OFFSET_BITS | offset)


def read_index(data: bytes) -> list[tuple[int, int]]:
    """The raw (seq, where) entries of an `events.idx`; a torn last entry is left out. In a log that
    never rolled `where` is the byte offset in `events.jsonl`."""
    return [ENTRY.unpack_from(data, at) for at in range(0, len(data) - ENTRY.size + 1, ENTRY.size)]


def index_entries(data: bytes) -> list[tuple[int, int, int]]:
    """The entries of (whole entries of) an `events.idx` as (seq, segment, offset in that segment)."""
    low = (1 << OFFSET_BITS) - 1
    return [(seq, where >> OFFSET_BITS, where & low) for seq, where in read_index(data)]


def locate(entries: list[tuple[int, int, int]], after: int) -> Place:
    """Where to start reading for the records after `after`: the last indexed record at or before
    `after + 1` (the reader skips what is not after `after`), else the log's start."""
    place = (0, 0, 0)
    for seq, segment, offset in entries:
        if seq > after + 1:
            break
        place = (seq - 1, segment, offset)
    return (*place, entries[-1][1] if entries else 0)


def is_final(event: dict[str, Any]) -> bool:
    """Whether `event` is a run's last record: a `status` record whose state is terminal."""
    return event.get("type") == "status" and event.get("state") in TERMINAL_STATES


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Whole records in `data` and how many bytes they used; a torn last line is left for later."""
    end = data.rfind(b"\n") + 1
    # one decode, then a split on "\n" alone: records are ASCII JSON (control characters escaped)
    events = [json.loads(line) for line in bytes(data[:end]).decode().split("\n") if line.strip()]
    return events, end


def next_chunk(data: bytes, size: int, chunk: int = CHUNK) -> tuple[list[dict[str, Any]], int, int]:
    """(whole records in `data`, bytes they used, the size to read next): a read that holds no
    whole line (one record longer than `size`) asks for twice the size, any other for `chunk`."""
    events, used = parse_lines(data)
    grow = used == 0 and len(data) >= size
    return events, used, size * 2 if grow else chunk


def last_records(data: bytes, whole: bool) -> list[dict[str, Any]]:
    """The whole records in the last bytes of a segment; `whole`: `data` starts at the segment's
    start (else its first line may be cut, and is left out)."""
    if not whole:
        data = data[data.find(b"\n") + 1:]
    return parse_lines(data)[0]


class Cursor:
    """A forward reader's place in a log: the records after `after`, in order and each once, across
    segments. `request` names the read it needs next; the caller reads it (b"" for a missing file)
    and hands the bytes to `receive`. It holds one chunk at a time and a few numbers. Given a
    `place` (another cursor's, at or before `after`), it starts there without asking the index."""

    def __init__(self, after: int = 0, chunk: int = CHUNK, place: Place | None = None):
        self.after, self.chunk = after, chunk
        self.size = chunk
        # behind: the highest seq before (segment, offset); last_segment: the newest the index named when last read
        self.behind, self.segment, self.offset, self.last_segment = place or (0, 0, 0, 0)
        self.last: dict[str, Any] | None = None  # the last whole record read, even one not after `after`
        self._span = INDEX_SPAN
        # start: where `after` is; segment: records; index: has the writer rolled? From the log's start
        # the index is not needed: the first segment's end asks it which segments there are
        self._asking = "start" if after > 0 and place is None else "segment"

    def place(self) -> Place:
        """Where the next segment read starts, for a later cursor (`place=`) to start at."""
        return self.behind, self.segment, self.offset, self.last_segment

    def request(self) -> Read:
        """The read to do next."""
        if self._asking == "start":  # back from the index's end, only as far as `after` needs
            return INDEX_FILE, -self._span, None
        if self._asking == "index":  # its last entry names the segment being written
            return INDEX_FILE, -ENTRY.size, None
        return segment_name(self.segment), self.offset, self.size

    def receive(self, data: bytes) -> tuple[list[dict[str, Any]], bool]:
        """(the records after the last one given that `data`, the answer to `request`, holds; whether
        the log's end was reached: nothing more until the writer writes more)."""
        if self._asking == "start":
            entries = index_entries(data)
            if len(data) < self._span or (entries and entries[0][0] <= self.after + 1):
                self.behind, self.segment, self.offset, self.last_segment = locate(entries, self.after)
                self._asking = "segment"
            else:
                self._span *= 4
            return [], False
        if self._asking == "index":
            entries = index_entries(data)
            self.last_segment = max(self.last_segment, entries[-1][1] if entries else 0)
            self._asking = "segment"
            # a newer segment: this one is whole now, and is read to its end once more before moving on
            return [], self.last_segment <= self.segment
        requested = self.size
        events, used, self.size = next_chunk(data, requested, self.chunk)
        self.offset += used
        if events:
            self.last = events[-1]
            self.behind = self.last["seq"]
        new = [e for e in events if e["seq"] > self.after]
        if new:
            self.after = new[-1]["seq"]
        if len(data) < requested:  # the segment's end, as of this read
            if self.last_segment > self.segment:
                # the index named a newer segment before this read: this one was whole when read
                self.segment, self.offset, self.size = self.segment + 1, 0, self.chunk
            elif self.last is not None and is_final(self.last):
                return new, True  # a final record is the log's last: no need to ask the index
            else:
                self._asking = "index"
        return new, False


def tail_plan(count: int, span: int = TAIL_SPAN) -> Generator[Read, bytes, list[dict[str, Any]]]:
    """The last `count` whole records of a log, read back from the end of its newest segment (then
    the one before, ...) only as far as they go; drive it with `run_local` or an executor's reads."""
    entries = index_entries((yield INDEX_FILE, -ENTRY.size, None))
    segment = entries[-1][1] if entries else 0
    found: list[dict[str, Any]] = []
    while count > 0:
        size = span
        while True:
            data = yield segment_name(segment), -size, None
            whole = len(data) < size
            events = last_records(data, whole)
            if len(events) + len(found) >= count or whole:
                break
            size *= 4
        found = (events + found)[-count:]
        if len(found) >= count or segment == 0:
            break
        segment -= 1  # a segment just started (or a short one) holds too few: the one before is whole
    return found


def read_local(run_dir: str | os.PathLike[str], request: Read) -> bytes:
    """Do a plan's read on this machine's files; b"" for a missing file."""
    name, offset, size = request
    try:
        with open(os.path.join(run_dir, name), "rb") as handle:
            if offset < 0:
                offset = max(0, handle.seek(0, os.SEEK_END) + offset)
            handle.seek(offset)
            return handle.read(-1 if size is None else size)
    except FileNotFoundError:
        return b""


def run_local(plan: Generator[Read, bytes, Result], run_dir: str | os.PathLike[str]) -> Result:
    """Drive a plan (`tail_plan`) with reads of this machine's files; returns what it returns."""
    try:
        request = next(plan)
        while True:
            request = plan.send(read_local(run_dir, request))
    except StopIteration as done:
        return done.value
