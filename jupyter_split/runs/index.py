"""The local run index: one sqlite file listing every run started from this machine."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SplitError
from ..paths import index_path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    state TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    mode TEXT NOT NULL,
    name TEXT,
    handle TEXT NOT NULL DEFAULT '{}',
    out_vars TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_line TEXT NOT NULL DEFAULT '',
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    site TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    started REAL NOT NULL
);
"""


class UnknownRun(SplitError, LookupError):
    """No run in the index matches; the message says how to list them."""

    http_status, http_reason = 404, "unknown run"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown run"


@dataclass
class RunRecord:
    """One row of the run index: where a run is (site, run_dir), how it runs (`mode` "session" or
    "detached", the executor's `handle`), and what the index last saw of it.

    The event log, not this row, is the truth: `state`, `last_seq` and `last_line` may lag behind it, and
    `Split.list_runs` brings the rows of active runs up to date. `delivered`: its --out variables reached
    a namespace.
    """

    run_id: str
    site: str
    run_dir: str
    mode: str
    state: str = "submitted"
    name: str | None = None
    handle: dict[str, Any] = field(default_factory=dict)
    out_vars: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    last_seq: int = 0
    last_line: str = ""
    delivered: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain, JSON-able dict."""
        return asdict(self)


class RunIndex:
    """The run index of this machine: a sqlite file (`index.sqlite` in the data directory) of every
    run started here, and of each site's session runner.

    Usable from several threads (a connection each) and processes at once (WAL).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else index_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        """This thread's connection. WAL with synchronous=NORMAL: no fsync per write; the
        event logs, not the index, are the truth, so a power cut costs at most a stale row."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def add(self, record: RunRecord) -> None:
        """Insert `record`, replacing any row with the same run id."""
        row = record.to_dict()
        row["handle"] = json.dumps(row["handle"])
        row["out_vars"] = json.dumps(row["out_vars"])
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self._db() as db:
            db.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})", row)

    def update(self, run_id: str, **fields: Any) -> None:
        """Set `fields` of the run's row and its `updated` time; an unknown run id changes nothing."""
        if "handle" in fields:
            fields["handle"] = json.dumps(fields["handle"])
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        with self._db() as db:
            db.execute(f"UPDATE runs SET {sets} WHERE run_id = :run_id", {**fields, "run_id": run_id})

    def get(self, run_id: str) -> RunRecord:
        """The run whose id is `run_id`, else the one run whose id contains it.

        Raises UnknownRun (a LookupError, 404 in the server) where none matches or several do.
        """
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                row = self._by_prefix(db, run_id)
        return _record(row)

    def _by_prefix(self, db: sqlite3.Connection, run_id: str) -> sqlite3.Row:
        # a plain substring (instr), not LIKE: `_` and `%` in a run id are characters, not wildcards
        rows = db.execute("SELECT * FROM runs WHERE instr(run_id, ?) > 0 ORDER BY created DESC", (run_id,)).fetchall()
        if len(rows) == 1:
            return rows[0]
        if not rows:
            raise UnknownRun(f"no run {run_id!r} in the run index ({self.path}); `%split runs` lists the known runs")
        names = ", ".join(r["run_id"] for r in rows[:5])
        raise UnknownRun(f"{run_id!r} matches {len(rows)} runs ({names}...); give more of the run id")

    def list(self, site: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Up to `limit` runs, newest first; `site` keeps that site's only. Rows as stored: `Split.list_runs`
        refreshes the active ones first."""
        query, args = "SELECT * FROM runs", []
        if site:
            query, args = query + " WHERE site = ?", [site]
        with self._db() as db:
            rows = db.execute(query + " ORDER BY created DESC LIMIT ?", (*args, limit)).fetchall()
        return [_record(r) for r in rows]

    def session(self, site: str) -> dict[str, Any] | None:
        """The handle of `site`'s session runner as last recorded, or None; it may have died since
        (ask the executor's `alive`)."""
        with self._db() as db:
            row = db.execute("SELECT handle FROM sessions WHERE site = ?", (site,)).fetchone()
        return json.loads(row["handle"]) if row else None

    def set_session(self, site: str, handle: dict[str, Any] | None) -> None:
        """Record `site`'s session runner, or forget it (`handle` None)."""
        with self._db() as db:
            if handle is None:
                db.execute("DELETE FROM sessions WHERE site = ?", (site,))
            else:
                db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", (site, json.dumps(handle), time.time()))


def _record(row: sqlite3.Row) -> RunRecord:
    data = dict(row)
    data["handle"] = json.loads(data["handle"])
    data["out_vars"] = json.loads(data["out_vars"])
    data["delivered"] = bool(data["delivered"])
    return RunRecord(**data)
