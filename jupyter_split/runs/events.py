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

EVENTS_FILE = "events.jsonl"
#: beside the log, the final record of a runner that died before it wrote its own (`core.follow.record_death`):
#: the runner is the log's one writer
ENDED_FILE = "ended.json"
LAST_LINE_CHARS = 200


@dataclass
class RunView:
    """What a run's events say of it: the last `seq` read, its state and its last line of output."""

    seq: int = 0
    state: str = "running"
    last_line: str = ""

    def add(self, event: dict[str, Any]) -> None:
        """Fold in one more record: its `seq`, a stream's last non-blank line, a status record's state."""
        self.seq = max(self.seq, event["seq"])
        if event["type"] == "stream" and event["text"].strip():
            self.last_line = event["text"].strip().splitlines()[-1][:LAST_LINE_CHARS]
        elif event["type"] == "status":
            self.state = event["state"]


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
        self._file = open(self.path, "a", encoding="utf-8")
        self._on_event = on_event

    def append(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Write one record (the next `seq`, a timestamp, its type and fields), flush it, hand it to
        `on_event` under the lock, and return it."""
        with self._lock:
            self.seq += 1
            event = {"seq": self.seq, "t": round(time.time(), 6), "type": type_, **fields}
            self._file.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
            self._file.flush()
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


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Whole records in `data` and how many bytes they used; a torn last line is left for later."""
    end = data.rfind(b"\n") + 1
    events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return events, end


def read_events(run_dir: str | os.PathLike[str], after_seq: int = 0) -> list[dict[str, Any]]:
    """The whole records of a run directory's log on this machine after `after_seq`; [] where there
    is no log. A torn last line (still being written) is left out."""
    path = Path(run_dir) / EVENTS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    events, _ = parse_lines(data)
    return [e for e in events if e["seq"] > after_seq]


def last_seq(path: Path) -> int:
    """The `seq` of the log's last whole record; 0 for a log that is missing or empty."""
    try:
        events, _ = parse_lines(path.read_bytes())
    except FileNotFoundError:
        return 0
    return events[-1]["seq"] if events else 0


def after(events: Iterable[dict[str, Any]], seq: int) -> Iterator[dict[str, Any]]:
    """The records of `events` whose `seq` is above `seq`, lazily."""
    return (e for e in events if e["seq"] > seq)
