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

Beside the log, `events.idx` maps a `seq` to the byte where its record starts, one entry
every INDEX_EVERY bytes of log: a reader starts near any `seq` (or the last N records)
without reading the log from its start, so replay and tail cost the same at any length
and hold one chunk at a time.
"""
from __future__ import annotations

import json
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..protocol import TERMINAL_STATES

EVENTS_FILE = "events.jsonl"
#: beside the log, the final record of a runner that died before it wrote its own (`core.follow.record_death`):
#: the runner is the log's one writer
ENDED_FILE = "ended.json"
INDEX_FILE = "events.idx"
LAST_LINE_CHARS = 200
#: an index entry (seq, byte offset of its record) at least every this many bytes of log
INDEX_EVERY = 1 << 20
#: readers take the log this much at a time
CHUNK = 1 << 20
_ENTRY = struct.Struct("<QQ")


@dataclass
class RunView:
    """What a run's events say of it: the last `seq` read, its state and its last line of output."""

    seq: int = 0
    state: str = "running"
    _text: str = ""  # the last stream text with a non-blank line: its last line is found when asked for

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

    @property
    def last_line(self) -> str:
        """The last non-blank line of output, cut to LAST_LINE_CHARS."""
        text = self._text.strip()
        return text.splitlines()[-1][:LAST_LINE_CHARS] if text else ""


def run_view(events: Iterable[dict[str, Any]], state: str = "running") -> RunView:
    """Fold a run's events into its view; `state` stands while the log has no `status` record."""
    view = RunView(state=state)
    for event in events:
        view.add(event)
    return view


def is_final(event: dict[str, Any]) -> bool:
    """Whether `event` is a run's last record: a `status` record whose state is terminal."""
    return event.get("type") == "status" and event.get("state") in TERMINAL_STATES


class EventLog:
    """Appends records to a run's event log, flushed and fsync-free per record.

    The runner is the log's one writer. Numbering goes on from the log's last `seq`, so a
    requeued job appends after what it wrote before.
    """

    def __init__(self, run_dir: str | os.PathLike[str], on_event: Callable[[dict[str, Any]], None] | None = None):
        self.path = Path(run_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.seq = last_seq(self.path)
        self._file = open(self.path, "ab")
        self._offset = self._file.seek(0, os.SEEK_END)
        self._index = open(self.path.with_name(INDEX_FILE), "ab")
        entries = read_index(self.path.with_name(INDEX_FILE).read_bytes())
        self._indexed = entries[-1][1] if entries else 0
        self._on_event = on_event

    def append(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Write one record (the next `seq`, a timestamp, its type and fields), flush it, hand it to
        `on_event` under the lock, and return it."""
        with self._lock:
            self.seq += 1
            event = {"seq": self.seq, "t": round(time.time(), 6), "type": type_, **fields}
            line = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()
            if self._offset - self._indexed >= INDEX_EVERY:
                # the index entry is written before its record: an entry never points past the log's end
                self._index.write(_ENTRY.pack(self.seq, self._offset))
                self._index.flush()
                self._indexed = self._offset
            self._file.write(line)
            self._file.flush()
            self._offset += len(line)
            if self._on_event is not None:
                self._on_event(event)
            return event

    @property
    def lock(self) -> threading.Lock:
        """Held while a record is written and broadcast: hold it to replay then subscribe without a gap."""
        return self._lock

    def close(self) -> None:
        """Close the log file; a later `append` raises ValueError."""
        with self._lock:
            self._file.close()
            self._index.close()


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Whole records in `data` and how many bytes they used; a torn last line is left for later."""
    end = data.rfind(b"\n") + 1
    # one decode, then a split on "\n" alone: records are ASCII JSON (control characters escaped)
    events = [json.loads(line) for line in bytes(data[:end]).decode().split("\n") if line.strip()]
    return events, end


def read_index(data: bytes) -> list[tuple[int, int]]:
    """The (seq, byte offset) entries of an `events.idx`; a torn last entry is left out."""
    return [_ENTRY.unpack_from(data, at) for at in range(0, len(data) - _ENTRY.size + 1, _ENTRY.size)]


def start_offset(index: bytes, after: int) -> int:
    """Where to start reading the log for the records after `after`: the last indexed record at
    or before `after + 1` (the reader skips what is not after `after`), else the start."""
    offset = 0
    for seq, at in read_index(index):
        if seq > after + 1:
            break
        offset = at
    return offset


def next_chunk(data: bytes, size: int) -> tuple[list[dict[str, Any]], int, int]:
    """(whole records in `data`, bytes they used, the size to read next): a chunk that holds no
    whole line (one record longer than `size`) asks for twice the size, a full one for the same."""
    events, used = parse_lines(data)
    grow = used == 0 and len(data) >= size
    return events, used, size * 2 if grow else CHUNK


def iter_events(run_dir: str | os.PathLike[str], after_seq: int = 0) -> Iterator[dict[str, Any]]:
    """The whole records of a run directory's log on this machine after `after_seq`, one chunk at
    a time from near `after_seq` (its index); nothing where there is no log. A torn last line
    (still being written) is left out."""
    path = Path(run_dir) / EVENTS_FILE
    try:
        index = path.with_name(INDEX_FILE).read_bytes()
    except FileNotFoundError:
        index = b""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(start_offset(index, after_seq))
        size = CHUNK
        while data := handle.read(requested := size):
            events, used, size = next_chunk(data, requested)
            yield from (e for e in events if e["seq"] > after_seq)
            if used < len(data):
                if len(data) < requested:
                    return  # the end of the file: what is left is a line still being written
                handle.seek(used - len(data), os.SEEK_CUR)


def read_events(run_dir: str | os.PathLike[str], after_seq: int = 0) -> list[dict[str, Any]]:
    """`iter_events` as a list (for logs known to be short: a rank's, a requeue's attempts)."""
    return list(iter_events(run_dir, after_seq))


def last_records(data: bytes, whole: bool) -> list[dict[str, Any]]:
    """The whole records in the last bytes of a log; `whole`: `data` starts at the log's start
    (else its first line may be cut, and is left out)."""
    if not whole:
        data = data[data.find(b"\n") + 1:]
    return parse_lines(data)[0]


def tail_events(path: str | os.PathLike[str], count: int) -> list[dict[str, Any]]:
    """The last `count` whole records of a log on this machine, reading back from its end only as
    far as they go; [] for a log that is missing or empty."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return []
    with handle:
        size = handle.seek(0, os.SEEK_END)
        span = 1 << 16
        while True:
            start = max(0, size - span)
            handle.seek(start)
            events = last_records(handle.read(size - start), whole=start == 0)
            if len(events) >= count or start == 0:
                return events[-count:] if count else []
            span *= 4


def last_seq(path: Path) -> int:
    """The `seq` of the log's last whole record; 0 for a log that is missing or empty."""
    events = tail_events(path, 1)
    return events[-1]["seq"] if events else 0


def after(events: Iterable[dict[str, Any]], seq: int) -> Iterator[dict[str, Any]]:
    """The records of `events` whose `seq` is above `seq`, lazily."""
    return (e for e in events if e["seq"] > seq)
