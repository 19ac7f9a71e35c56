"""The event log: `events.jsonl` in a run directory, the truth about a run.

One JSON record a line, each with `seq` (1, 2, ...) and `type`:
  stream   {name: stdout|stderr, text}
  display  {data: mime bundle, metadata, transient?, update?}
  clear    {wait}
  result   {data, metadata, execution_count}
  error    {ename, evalue, traceback: [lines]}
  progress {label, done, total}
  status   {state, reason?, final?}
Live streaming and reattaching both deliver records by `seq`, so a reader that
remembers the last `seq` it showed never loses or doubles one.

A long run's log is several files, `events.jsonl` then `events.000001.jsonl`, ..., rolled when one
passes a size, and `events.idx` beside them says where the record of a `seq` starts, one entry
every INDEX_EVERY bytes and one at each segment's start: a reader starts near any `seq` (or the
last N records) without reading the log from its start, so appends, replay and tail cost the
same at any length and hold one chunk at a time. The files and how they are read:
`runs.segments`.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..protocol import TERMINAL_STATES
from .segments import (CHUNK, ENTRY, EVENTS_FILE, INDEX_FILE, SEGMENT_BYTES, Cursor, index_entry, index_entries,
                       is_final, read_index, read_local, run_local, segment_name, tail_plan)

#: beside the log, the final record of a runner that died before it wrote its own (`core.follow.record_death`):
#: the runner is the log's one writer
ENDED_FILE = "ended.json"
LAST_LINE_CHARS = 200
#: an index entry (seq, where its record starts) at least every this many bytes of a segment
INDEX_EVERY = 1 << 20

# what importers of this module used before the log's files moved to `runs.segments`
__all__ = ["CHUNK", "ENDED_FILE", "EVENTS_FILE", "INDEX_EVERY", "INDEX_FILE", "TERMINAL_STATES", "EventLog", "RunView",
           "after", "is_final", "iter_events", "last_seq", "read_events", "read_index", "run_view", "tail_events"]


@dataclass
class RunView:
    """What a run's events say of it: the last `seq` read, its state and its last line of output."""

    seq: int = 0
    state: str = "running"
    _text: str = ""  # the last stream text with a non-blank line: its last line is found when asked for
    _error: str = ""  # the last error record's "Name: value": a failed run's last line (the sidebar, `runs`)

    def add(self, event: dict[str, Any]) -> None:
        """Fold in one more record: its `seq`, a stream's text, a status record's state."""
        if event["seq"] > self.seq:
            self.seq = event["seq"]
        kind = event["type"]
        if kind == "stream":
            text = event["text"]
            if text and not text.isspace():
                self._text = text
        elif kind == "status":
            self.state = event["state"]
        elif kind == "error":
            self._error = f"{event.get('ename', 'Error')}: {event.get('evalue', '')}".strip()

    @property
    def last_line(self) -> str:
        """The last non-blank line of output, cut to LAST_LINE_CHARS; for a failed run, its error's first line."""
        if self.state == "failed" and self._error:
            return self._error.splitlines()[0][:LAST_LINE_CHARS]
        text = self._text.strip()
        return text.splitlines()[-1][:LAST_LINE_CHARS] if text else ""


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` as JSON through a temporary file and a rename, so a reader
    never sees half a file. Values JSON lacks are written as their str()."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def run_view(events: Iterable[dict[str, Any]], state: str = "running") -> RunView:
    """Fold a run's events into its view; `state` stands while the log has no `status` record."""
    view = RunView(state=state)
    for event in events:
        view.add(event)
    return view


class EventLog:
    """Appends records to a run's event log, flushed and fsync-free per record, rolling it into a
    new segment once the one being written holds `segment_bytes`.

    The runner is the log's one writer. Numbering goes on from the log's last `seq`, in its newest
    segment, so a requeued job appends after what it wrote before.
    """

    def __init__(self, run_dir: str | os.PathLike[str], on_event: Callable[[dict[str, Any]], None] | None = None,
                 segment_bytes: int = SEGMENT_BYTES):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._index = open(self.dir / INDEX_FILE, "ab")
        torn = self._index.seek(0, os.SEEK_END) % ENTRY.size
        if torn:  # a crash mid-entry: cut it, or every later entry would be read misaligned
            self._index.truncate(self._index.tell() - torn)
        last = index_entries(read_local(self.dir, (INDEX_FILE, -ENTRY.size, None)))
        self.segment, self._indexed = last[-1][1:] if last else (0, 0)
        self.seq = last_seq(self.dir)
        self.path = self.dir / segment_name(self.segment)
        self._file = open(self.path, "ab")
        self._offset = self._file.seek(0, os.SEEK_END)
        self._on_event = on_event

    def append(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Write one record (the next `seq`, a timestamp, its type and fields), flush it, hand it to
        `on_event` under the lock, and return it."""
        with self._lock:
            self.seq += 1
            event = {"seq": self.seq, "t": round(time.time(), 6), "type": type_, **fields}
            line = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()
            if self._offset >= self.segment_bytes:
                self._roll()
            elif self._offset - self._indexed >= INDEX_EVERY:
                self._mark()
            self._file.write(line)
            self._file.flush()
            self._offset += len(line)
            if self._on_event is not None:
                self._on_event(event)
            return event

    def _roll(self) -> None:
        """Go on in a new segment. The order is what lets readers cross without a lock (see
        `runs.segments`): the old segment is whole, the new one exists, then the index names it."""
        self._file.close()
        self.segment += 1
        self.path = self.dir / segment_name(self.segment)
        self._file = open(self.path, "ab")
        self._offset = 0
        self._mark()

    def _mark(self) -> None:
        # the index entry is written before its record: an entry never points past the log's end
        self._index.write(index_entry(self.seq, self.segment, self._offset))
        self._index.flush()
        self._indexed = self._offset

    @property
    def lock(self) -> threading.Lock:
        """Held while a record is written and broadcast: hold it to replay then subscribe without a gap."""
        return self._lock

    def close(self) -> None:
        """Close the log file; a later `append` raises ValueError."""
        with self._lock:
            self._file.close()
            self._index.close()


def iter_events(run_dir: str | os.PathLike[str], after_seq: int = 0) -> Iterator[dict[str, Any]]:
    """The whole records of a run directory's log on this machine after `after_seq`, across its
    segments, one chunk at a time from near `after_seq` (its index); nothing where there is no log.
    A torn last line (still being written) is left out; a roll while this reads is crossed."""
    cursor = Cursor(after_seq, CHUNK)
    while True:
        events, at_end = cursor.receive(read_local(run_dir, cursor.request()))
        yield from events
        if at_end:
            return


def read_events(run_dir: str | os.PathLike[str], after_seq: int = 0) -> list[dict[str, Any]]:
    """`iter_events` as a list (for logs known to be short: a rank's, a requeue's attempts)."""
    return list(iter_events(run_dir, after_seq))


def tail_events(path: str | os.PathLike[str], count: int) -> list[dict[str, Any]]:
    """The last `count` whole records of the log whose first segment is `path` (its `events.jsonl`;
    the later segments sit beside it), on this machine, reading back from its end only as far as
    they go; [] for a log that is missing or empty."""
    return run_local(tail_plan(count), Path(path).parent)


def last_seq(run_dir: str | os.PathLike[str]) -> int:
    """The `seq` of a run directory's log's last whole record; 0 for a log that is missing or empty."""
    events = run_local(tail_plan(1), run_dir)
    return events[-1]["seq"] if events else 0


def after(events: Iterable[dict[str, Any]], seq: int) -> Iterator[dict[str, Any]]:
    """The records of `events` whose `seq` is above `seq`, lazily."""
    return (e for e in events if e["seq"] > seq)
