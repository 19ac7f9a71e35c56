"""Reading a run's event log on its site a chunk at a time, across its segments: from any `seq`
(through the log's index, `events.idx`), or its last records read back from the end. Memory
stays one chunk whatever the log's length; the record `follow.record_death` keeps beside a log
with no final record of its own comes last, as if it were the log's. What to read comes from
`runs.segments` (the same rules the runner reads its own logs by); the reads go through the
executor's `read_file`, so they work alike on every site."""
from __future__ import annotations

import json
import posixpath
from collections import OrderedDict
from typing import Any, AsyncIterator, Generator, TypeVar

from ..executors.files import LogFiles
from ..runs.events import ENDED_FILE, is_final
from ..runs.segments import CHUNK, TAIL_SPAN, Cursor, Place, Read, tail_plan

Result = TypeVar("Result")
#: how many logs `_places` remembers
PLACES = 256
#: where the last chunk of a log read in this process began and ended, by (site, run directory): a
#: reader asked for what follows a seq in that chunk starts there, not at the index entry before it,
#: so one that asks again from the last seq it got (the sidebar's panel polling through the server)
#: reads only what came since
_places: OrderedDict[tuple[str, str], tuple[Place, Place]] = OrderedDict()


class LogReader:
    """Reads one run's log forward from after a `seq`, a chunk per call, remembering where it is:
    a follower polling a growing log reads each byte once, and crosses to the next segment when
    the writer rolls."""

    def __init__(self, ex: LogFiles, run_dir: str, after: int = 0):
        self.ex, self.run_dir = ex, run_dir
        self.key = (ex.site_name, run_dir)
        self.cursor = Cursor(after, CHUNK, _place(self.key, after))

    async def chunk(self) -> tuple[list[dict[str, Any]], bool]:
        """(the next records after the last one given, whether this read reached the log's end)."""
        while True:
            begun = self.cursor.place()
            events, at_end = self.cursor.receive(await _read(self.ex, self.run_dir, self.cursor.request()))
            if self.cursor.last is not None:
                _places[self.key] = (begun, self.cursor.place())
                _places.move_to_end(self.key)
                if len(_places) > PLACES:
                    _places.popitem(last=False)
            if events or at_end:
                return events, at_end

    async def ended(self) -> dict[str, Any] | None:
        """The record kept beside the log (`ended.json`) where the log read so far has no final one."""
        last = self.cursor.last
        if last is not None and is_final(last):
            return None
        found = await ended_record(self.ex, self.run_dir)
        return found if found and found["seq"] > max(self.cursor.after, last["seq"] if last else 0) else None


def _place(key: tuple[str, str], after: int) -> Place | None:
    """A remembered place to read the records after `after` from: where the last chunk read ended
    when it ended at `after`, else where it began when `after` is in it. Neither: None (the index)."""
    if (found := _places.get(key)) is None:
        return None
    begun, ended = found
    return ended if ended[0] == after else begun if begun[0] <= after < ended[0] else None


async def stream(ex: LogFiles, run_dir: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
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


async def tail(ex: LogFiles, run_dir: str, count: int) -> list[dict[str, Any]]:
    """The last `count` records (the ended one among them where the log has no final record),
    reading back from the log's end only as far as they go."""
    events = await _run(tail_plan(count, TAIL_SPAN), ex, run_dir) if count > 0 else []
    if not (events and is_final(events[-1])):
        ended = await ended_record(ex, run_dir)
        if ended and (not events or ended["seq"] > events[-1]["seq"]):
            events.append(ended)
    return events[-count:] if count > 0 else []


async def ended_record(ex: LogFiles, run_dir: str) -> dict[str, Any] | None:
    """The final record `record_death` kept beside the log, if there is one."""
    try:
        found = json.loads(await ex.read_file(posixpath.join(run_dir, ENDED_FILE)))
    except (FileNotFoundError, ValueError):
        return None
    return found if is_final(found) else None


async def _run(plan: Generator[Read, bytes, Result], ex: LogFiles, run_dir: str) -> Result:
    """Drive a plan of `runs.segments` with the executor's reads (`run_local`, on the site)."""
    try:
        request = next(plan)
        while True:
            request = plan.send(await _read(ex, run_dir, request))
    except StopIteration as done:
        return done.value


async def _read(ex: LogFiles, run_dir: str, request: Read) -> bytes:
    name, offset, size = request
    try:
        return await ex.read_file(posixpath.join(run_dir, name), offset, size)
    except FileNotFoundError:
        return b""
