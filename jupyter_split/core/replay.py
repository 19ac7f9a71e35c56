"""Reading a run's event log on its site a chunk at a time: from any `seq` (through the log's
index, `events.idx`), or its last records read back from the end. Memory stays one chunk
whatever the log's length; the record `follow.record_death` keeps beside a log with no final
record of its own comes last, as if it were the log's."""
from __future__ import annotations

import json
import posixpath
from typing import Any, AsyncIterator

from ..executors.base import Executor
from ..runs.events import CHUNK, ENDED_FILE, EVENTS_FILE, INDEX_FILE, is_final, last_records, next_chunk, start_offset

#: the first read back from a log's end; it grows fourfold until it holds the records asked for
TAIL_SPAN = 1 << 16


class LogReader:
    """Reads one run's log forward from after a `seq`, a chunk per call, remembering where it is:
    a follower polling a growing log reads each byte once."""

    def __init__(self, ex: Executor, run_dir: str, after: int = 0):
        self.ex, self.run_dir, self.after = ex, run_dir, after
        self.path = posixpath.join(run_dir, EVENTS_FILE)
        self.offset: int | None = None  # found from the index at the first read
        self.size = CHUNK
        self.last: dict[str, Any] | None = None  # the last whole record read, even one not after `after`

    async def chunk(self) -> tuple[list[dict[str, Any]], bool]:
        """(the next records after the last one given, whether this read reached the log's end)."""
        if self.offset is None:
            self.offset = start_offset(await _read(self.ex, posixpath.join(self.run_dir, INDEX_FILE)), self.after)
        requested = self.size
        data = await _read(self.ex, self.path, self.offset, requested)
        events, used, self.size = next_chunk(data, requested)
        self.offset += used
        if events:
            self.last = events[-1]
        new = [e for e in events if e["seq"] > self.after]
        if new:
            self.after = new[-1]["seq"]
        return new, len(data) < requested

    async def ended(self) -> dict[str, Any] | None:
        """The record kept beside the log (`ended.json`) where the log read so far has no final one."""
        if self.last is not None and is_final(self.last):
            return None
        found = await ended_record(self.ex, self.run_dir)
        return found if found and found["seq"] > max(self.after, self.last["seq"] if self.last else 0) else None


async def stream(ex: Executor, run_dir: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
    """The records after `after` to the log's end, then the ended one if the log has no final record."""
    reader = LogReader(ex, run_dir, after)
    while True:
        events, at_end = await reader.chunk()
        for event in events:
            yield event
        if at_end:
            break
    if (ended := await reader.ended()) is not None:
        yield ended


async def tail(ex: Executor, run_dir: str, count: int) -> list[dict[str, Any]]:
    """The last `count` records (the ended one among them where the log has no final record),
    reading back from the log's end only as far as they go."""
    path, span = posixpath.join(run_dir, EVENTS_FILE), TAIL_SPAN
    while True:
        data = await _read(ex, path, -span)
        whole = len(data) < span
        events = last_records(data, whole)
        if len(events) >= count or whole:
            break
        span *= 4
    if not (events and is_final(events[-1])):
        ended = await ended_record(ex, run_dir)
        if ended and (not events or ended["seq"] > events[-1]["seq"]):
            events.append(ended)
    return events[-count:] if count > 0 else []


async def ended_record(ex: Executor, run_dir: str) -> dict[str, Any] | None:
    """The final record `record_death` kept beside the log, if there is one."""
    try:
        found = json.loads(await ex.read_file(posixpath.join(run_dir, ENDED_FILE)))
    except (FileNotFoundError, ValueError):
        return None
    return found if is_final(found) else None


async def _read(ex: Executor, path: str, offset: int = 0, size: int | None = None) -> bytes:
    try:
        return await ex.read_file(path, offset, size)
    except FileNotFoundError:
        return b""
