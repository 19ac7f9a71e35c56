"""Following a run: live over the runner's socket, else by reading its event log; never a gap or a double.

The reader remembers the last `seq` it delivered. After a dropped link it reconnects
with backoff and asks for records after that `seq`; when the runner is gone it drains
the log, and if the log has no final record it keeps one beside it saying the runner died
(`record_death`).
"""
from __future__ import annotations

import asyncio
import json
import posixpath
import time
from typing import Any, AsyncIterator, Callable

from .. import protocol
from ..executors.base import Executor
from ..runs.events import ENDED_FILE, RunView, is_final
from ..runs.index import RunIndex, RunRecord
from .channel import records
from .replay import LogReader, tail

POLL_SECONDS = 0.2
MAX_BACKOFF = 5.0
STARTING_POLL = 0.02


async def _live(ex: Executor, sock: str, run_dir: str, after: int) -> AsyncIterator[list[dict[str, Any]]]:
    reader, writer = await ex.open_channel(sock)
    try:
        writer.write(protocol.encode({"op": "follow", "run_dir": run_dir, "after": after}))
        await writer.drain()
    except BaseException:
        writer.close()
        raise
    async for batch in records(reader, writer):
        yield batch


async def _tail(ex: Executor, handle: dict[str, Any], run_dir: str, after: int) -> AsyncIterator[list[dict[str, Any]]]:
    """Poll the event log (executors without a live channel: Slurm, Ray; or a runner already gone),
    a chunk of records at a time from after `after`."""
    reader = LogReader(ex, run_dir, after)
    while True:
        events, at_end = await reader.chunk()
        if events:
            yield events
            if is_final(events[-1]):  # a final record is the log's last
                return
        if at_end:
            if not events and not await ex.alive(handle):
                return
            await asyncio.sleep(POLL_SECONDS)


async def follow(
    ex: Executor, handle: dict[str, Any], run_dir: str, after: int, deliver: Callable[[dict[str, Any]], None],
    flush: Callable[[], None] = lambda: None, live: AsyncIterator[list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Deliver every record after `after`, exactly once, until the final one; return it. `flush`
    is called after each batch delivered (a record at a time live, a chunk at a time from the log).
    `live`: the records already coming on a channel (the cell's own `execute`), read first."""
    last, backoff = after, POLL_SECONDS
    while True:
        if live is not None:
            source, live = live, None
        elif handle.get("sock") and ex.supports_sessions:
            source = _live(ex, handle["sock"], run_dir, last)
        else:
            source = _tail(ex, handle, run_dir, last)
        try:
            async for batch in source:
                last = _deliver(batch, last, deliver)
                flush()
                backoff = POLL_SECONDS
                if is_final(batch[-1]):
                    return batch[-1]
        except (OSError, EOFError, asyncio.IncompleteReadError, ConnectionError) as exc:
            lost = exc
        else:
            lost = None
        if await _alive(ex, handle):
            if isinstance(lost, (FileNotFoundError, ConnectionRefusedError)):
                await asyncio.sleep(STARTING_POLL)  # the runner is starting and not listening yet
            else:
                await asyncio.sleep(backoff)
            if lost is not None and not isinstance(lost, (FileNotFoundError, ConnectionRefusedError)):
                backoff = min(backoff * 2, MAX_BACKOFF)
                await _reconnect(ex)
            continue
        # The runner is gone: whatever it wrote is in the log; a missing final record means it died.
        async for batch in _tail(ex, {}, run_dir, last):
            last = _deliver(batch, last, deliver)
            flush()
            if is_final(batch[-1]):
                return batch[-1]
        final = await record_death(ex, handle, run_dir, last)
        deliver(final)
        flush()
        return final


def _deliver(batch: list[dict[str, Any]], last: int, deliver: Callable[[dict[str, Any]], None]) -> int:
    """Deliver the records of `batch` after `last`; returns the new last `seq`."""
    many = getattr(deliver, "many", None)
    if many is not None and batch[0].get("seq", 0) > last:  # a chunk read on from `last`: all of it is new
        many(batch)
        return max(last, batch[-1].get("seq", 0))
    for event in batch:
        seq = event.get("seq", 0)
        if seq > last:
            deliver(event)
            last = seq
    return last


async def _alive(ex: Executor, handle: dict[str, Any]) -> bool:
    try:
        return await ex.alive(handle)
    except (OSError, ConnectionError):
        await _reconnect(ex)
        return True


async def _reconnect(ex: Executor) -> None:
    try:
        await ex.reconnect()
    except (OSError, ConnectionError):
        pass  # still down: the next round backs off and tries again


async def record_death(ex: Executor, handle: dict[str, Any], run_dir: str, last: int,
                       state: str = "failed", how: str | None = None) -> dict[str, Any]:
    """The final record of a runner that could not write its own (SIGKILL, OOM, a lost machine).

    Call it once the runner is known to be gone. The log is read again first: a final record
    the runner wrote after the caller last looked is the answer, so a run that succeeded is
    never reported as failed. Otherwise the record is kept in `ended.json` beside the log, never
    in it: the event log has one writer, the runner. Asked again, it gives the same record."""
    events = await tail(ex, run_dir, 1)
    if events and is_final(events[-1]):
        return events[-1]
    how = how or ex.exit_reason(handle) or \
        "ended without a final status (killed, e.g. by SIGKILL or the OOM killer, or its machine went down)"
    which = f"job {handle['job_id']}" if handle.get("job_id") else f"pid {handle.get('pid', '?')}"
    reason = f"the runner ({which}) on site {ex.site.name!r} {how}"
    seq = max(last, events[-1]["seq"] if events else 0) + 1
    final = {"seq": seq, "t": round(time.time(), 6), "type": "status", "state": state, "reason": reason, "final": True}
    await ex.write_file(posixpath.join(run_dir, ENDED_FILE), json.dumps(final).encode())
    return final


class Tracker:
    """Delivers events and keeps the run index's view (last seq, last line) fresh, cheaply."""

    def __init__(self, index: RunIndex, record: RunRecord, deliver: Callable[[dict[str, Any]], None]):
        self.index, self.record, self.deliver = index, record, deliver
        self.error: dict[str, Any] | None = None
        self.view, self._saved = RunView(state=record.state), 0.0
        self._flush = getattr(deliver, "flush", None)  # outputs that buffer (TerminalOutput) have one

    def __call__(self, event: dict[str, Any]) -> None:
        self.deliver(event)
        self.view.add(event)
        if event["type"] == "error":
            self.error = event
        if time.monotonic() - self._saved > 1.0:
            self.save()

    def many(self, events: list[dict[str, Any]]) -> None:
        """Deliver a batch of records in order (a chunk of a log): what `__call__` does for each,
        with the output given the whole batch and the clock read once per batch, not per record."""
        deliver = getattr(self.deliver, "many", None)
        if deliver is not None:
            deliver(events)
        else:
            for event in events:
                self.deliver(event)
        for event in events:
            self.view.add(event)
            if event["type"] == "error":
                self.error = event
        if time.monotonic() - self._saved > 1.0:
            self.save()

    def flush(self) -> None:
        """Let the output show what it holds (a terminal's stream); called after each batch of records."""
        if self._flush is not None:
            self._flush()

    def save(self, **fields: Any) -> None:
        self._saved = time.monotonic()
        self.index.update(self.record.run_id, last_seq=self.view.seq, last_line=self.view.last_line, **fields)
