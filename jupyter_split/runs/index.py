"""The local run index: one sqlite file listing every run started from this machine."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import SplitError
from ..paths import index_path
from ..protocol import STATE_NAMES, TERMINAL_STATES

_TABLES = ("""
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
    delivered INTEGER NOT NULL DEFAULT 0,
    rev_id TEXT
)""", """
CREATE TABLE IF NOT EXISTS sessions (
    site TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    started REAL NOT NULL
)""")

#: The notebook a run came from, as the index on it and the listing's filter both spell it (sqlite uses
#: an index on an expression only for the very same expression); a handle that is not JSON has none.
_NOTEBOOK = "(CASE WHEN json_valid(handle) THEN json_extract(handle, '$.notebook') END)"
#: One index per question the faces ask, so that each costs the same at 100 runs and at 100,000: the
#: newest runs (`list`), a site's newest, the newest in a state (the sidebar's filter, `runs --state`),
#: of a site in a state, of a notebook, the rows in a state by their last change (`prune`, active runs),
#: and the ids ending with a part (`rev_id`: the run id reversed; the primary key serves the ids
#: starting with one).
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created)",
    "CREATE INDEX IF NOT EXISTS runs_by_site ON runs (site, created)",
    "CREATE INDEX IF NOT EXISTS runs_by_state_created ON runs (state, created)",
    "CREATE INDEX IF NOT EXISTS runs_by_site_state ON runs (site, state, created)",
    f"CREATE INDEX IF NOT EXISTS runs_by_notebook ON runs ({_NOTEBOOK}, created)",
    "CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, updated)",
    "CREATE INDEX IF NOT EXISTS runs_by_rev_id ON runs (rev_id)",
)
#: A counter every write to `runs` bumps (triggers, so writers of any version count): `RunIndex.version`, which
#: lets the sidebar's poll tell "nothing changed" with one row read, at any number of runs.
_COUNTER = (
    "CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY CHECK (id = 0), count INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO changes VALUES (0, 0)",
    *(f"CREATE TRIGGER IF NOT EXISTS runs_{op.lower()}_counted AFTER {op} ON runs "
      "BEGIN UPDATE changes SET count = count + 1 WHERE id = 0; END" for op in ("INSERT", "UPDATE", "DELETE")),
)
#: `PRAGMA user_version` of an index file with every column, index and trigger above; 0 is the first layout.
_VERSION = 3


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
        _upgrade(self._db())

    def _db(self) -> sqlite3.Connection:
        """This thread's connection. WAL with synchronous=NORMAL: no fsync per write; the
        event logs, not the index, are the truth, so a power cut costs at most a stale row."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=_WAIT, isolation_level=None)
            _to_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            db.create_function("split_reversed", 1, _reversed, deterministic=True)
            self._local.db = db
        return db

    def add(self, record: RunRecord) -> None:
        """Insert `record`, replacing any row with the same run id."""
        row = record.to_dict()
        row["handle"] = json.dumps(row["handle"])
        row["out_vars"] = json.dumps(row["out_vars"])
        row["rev_id"] = _reversed(record.run_id)
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self._db() as db:
            db.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})", row)

    def update(self, run_id: str, **fields: Any) -> None:
        """Set `fields` of the run's row and its `updated` time; an unknown run id changes nothing, and
        neither do `fields` the row already holds (a refresh that found a run as it was is no change)."""
        if "handle" in fields:
            fields["handle"] = json.dumps(fields["handle"])
        same = " AND ".join(f"{k} IS :{k}" for k in fields)
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        with self._db() as db:
            db.execute(f"UPDATE runs SET {sets} WHERE run_id = :run_id" + (f" AND NOT ({same})" if same else ""),
                       {**fields, "run_id": run_id})

    def version(self) -> int:
        """A number that changes whenever a run's row is added, changed or removed, by any process."""
        with self._db() as db:
            return db.execute("SELECT count FROM changes WHERE id = 0").fetchone()[0]

    def changes(self, site: str, after_row: int, since: float) -> tuple[int, int, int, int, list[RunRecord]]:
        """(`version()`, the newest row's number, how many rows there are, how many of them are rows up to
        `after_row`, and `site`'s rows after row `after_row` or updated at or after `since`), read at one
        moment: what changed since an earlier read, at the cost of the changes (row numbers only grow, and
        `runs_by_state` orders each state's rows by their last change). Fewer rows up to `after_row` than
        there were then: some of them went."""
        marks = ", ".join("?" * len(STATE_NAMES))
        # `+site`: not by the site's index, which would walk all its rows
        query = (f"SELECT * FROM runs WHERE rowid > ? AND +site = ? UNION "
                 f"SELECT * FROM runs WHERE state IN ({marks}) AND updated >= ? AND +site = ?")
        with self._db() as db:
            db.execute("BEGIN")  # one snapshot: the counter, the counts and the rows agree
            version = db.execute("SELECT count FROM changes WHERE id = 0").fetchone()[0]
            last, added = db.execute("SELECT coalesce(max(rowid), 0), count(*) FROM runs WHERE rowid > ?",
                                     (after_row,)).fetchone()
            total = db.execute("SELECT count(*) FROM runs").fetchone()[0]  # sqlite counts the pages' cells
            rows = db.execute(query, (after_row, site, *STATE_NAMES, since, site)).fetchall()
        return version, max(last, after_row), total, total - added, [_record(r) for r in rows]

    def get(self, run_id: str) -> RunRecord:
        """The run whose id is `run_id`, else the one run whose id starts or ends with it (the start of
        an id, or its random tail), else the one run whose id contains it. A run id that starts or ends
        with `run_id` wins over those that merely contain it.

        Raises UnknownRun (a LookupError, 404 in the server) where none matches or several do.
        """
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                row = self._by_part(db, run_id)
        return _record(row)

    def _by_part(self, db: sqlite3.Connection, part: str) -> sqlite3.Row:
        # Starting or ending with `part`: a range of the primary key or of the reversed ids, so an index
        # serves them. Only where neither finds one run, the substring scan (instr, not LIKE: `_` and
        # `%` in a run id are characters, not wildcards) finds them all, for its count and names.
        rows: dict[str, sqlite3.Row] = {}
        start, tail = _range(part), _range(_reversed(part))
        if start and tail:
            _fill_reversed(db)
            for column, (low, high) in (("run_id", start), ("rev_id", tail)):
                query = f"SELECT * FROM runs WHERE {column} >= ? AND {column} < ? LIMIT 2"
                rows.update((r["run_id"], r) for r in db.execute(query, (low, high)))
            if len(rows) == 1:
                return next(iter(rows.values()))
        # the ids alone: sqlite reads them off the primary key's index, a fraction of the table
        found = db.execute("SELECT count(*), max(run_id) FROM runs WHERE instr(run_id, ?) > 0", (part,)).fetchone()
        if found[0] == 1:
            return db.execute("SELECT * FROM runs WHERE run_id = ?", (found[1],)).fetchone()
        if not found[0]:
            raise UnknownRun(f"no run {part!r} in the run index ({self.path}); `%split runs` lists the known runs")
        newest = db.execute("SELECT run_id FROM runs WHERE instr(run_id, ?) > 0 ORDER BY created DESC LIMIT 5", (part,))
        names = ", ".join(r["run_id"] for r in newest)
        raise UnknownRun(f"{part!r} matches {found[0]} runs ({names}...); give more of the run id")

    def list(self, site: str | None = None, limit: int = 50, *, state: str | None = None, text: str | None = None,
             notebook: str | None = None, before: float | None = None) -> list[RunRecord]:
        """Up to `limit` runs, newest first; `site` keeps that site's only, `state` those in that state, `text`
        those whose id or name holds it (any case), `notebook` those started from that notebook (the path its
        kernel was given: `notebook` in its handle), `before` those created before it (the `created` of the
        last row of a page: the next page, read off the same index as the first, so a page costs the same
        however far back it lies). Rows as stored: `Split.list_runs` refreshes the active ones first."""
        where: list[str] = []
        args: list[Any] = []
        if before is not None:
            where.append("created < ?")
            args.append(before)
        for clause, value in (("site = ?", site), ("state = ?", state),
                              (f"{_NOTEBOOK} = ?", notebook)):
            if value:
                where.append(clause)
                args.append(value)
        if text:  # instr, not LIKE: `_` and `%` in an id are characters, not wildcards
            where.append("(instr(lower(run_id), ?) > 0 OR instr(lower(coalesce(name, '')), ?) > 0)")
            args += [text.lower(), text.lower()]
        query = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._db() as db:
            rows = db.execute(query + " ORDER BY created DESC LIMIT ?", (*args, limit)).fetchall()
        return [_record(r) for r in rows]

    def prune(self, before: float, site: str | None = None,
              keep: Callable[[list[RunRecord]], set[str]] | None = None) -> list[RunRecord]:
        """Remove the rows of the runs that ended before `before` (seconds since the epoch); `site` keeps
        to that site's. Returns the rows removed. A run the index does not know to have ended (its state is
        not terminal) is never removed. A row's `updated` time bounds its end from above (the index learns
        of an end when or after it happens), so no run that ended after `before` goes; one whose end the
        index learned late may stay until a later prune. Only the index changes: run directories stay,
        unless `keep` (given the rows about to go, e.g. to delete their run directories) names the run
        ids whose rows must stay (their directories could not be deleted).
        """
        states = sorted(TERMINAL_STATES)
        where = f"state IN ({', '.join('?' * len(states))}) AND updated < ?" + (" AND site = ?" if site else "")
        args = (*states, before, *([site] if site else []))
        with self._db() as db:
            rows = [_record(r) for r in db.execute(f"SELECT * FROM runs WHERE {where} ORDER BY created", args)]
        kept = keep(rows) if keep is not None else set()
        gone = [r for r in rows if r.run_id not in kept]
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(f"DELETE FROM runs WHERE run_id = ? AND {where}", [(r.run_id, *args) for r in gone])
        return gone

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


#: how long an opening waits for another process's lock on the index file, in seconds
_WAIT = 30


def _to_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode (it stays so). Turning a new file to WAL takes a lock for which sqlite does
    not call its busy handler: where several processes open a new index at once, one of them is answered
    "database is locked" at once. So wait for it here, as `timeout` waits for every other lock."""
    deadline = time.monotonic() + _WAIT
    pause = 0.005
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring an index file to this version's layout: the tables, the `rev_id` column (an older file lacks
    it) filled in, and every index. Once per file: its `user_version` says it is done."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= _VERSION:
        return
    with db:
        db.execute("BEGIN IMMEDIATE")  # another process may be upgrading the same file: one at a time
        for table in _TABLES:
            db.execute(table)
        if "rev_id" not in {c["name"] for c in db.execute("PRAGMA table_info(runs)")}:
            db.execute("ALTER TABLE runs ADD COLUMN rev_id TEXT")
        db.execute("UPDATE runs SET rev_id = split_reversed(run_id) WHERE rev_id IS NULL")  # before its index: faster
        for statement in (*_INDEXES, *_COUNTER):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {_VERSION}")


def _fill_reversed(db: sqlite3.Connection) -> None:
    """Fill `rev_id` where a row lacks it (written by an older version since the file was upgraded)."""
    if db.execute("SELECT 1 FROM runs WHERE rev_id IS NULL LIMIT 1").fetchone():
        db.execute("UPDATE runs SET rev_id = split_reversed(run_id) WHERE rev_id IS NULL")


def _reversed(text: str | None) -> str | None:
    return text[::-1] if text is not None else None


def _range(part: str) -> tuple[str, str] | None:
    """The bounds [low, high) of the strings that start with `part`, in sqlite's binary order of text (the
    order of code points), or None where there are none to give (empty `part`, or it ends in the last one)."""
    if not part:
        return None
    following = ord(part[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are no text: the next character is U+E000
        following = 0xE000
    if following > 0x10FFFF:
        return None
    return part, part[:-1] + chr(following)


def _record(row: sqlite3.Row) -> RunRecord:
    data = dict(row)
    data.pop("rev_id", None)
    # a row edited by hand never hides the others: what cannot be read is empty
    data["handle"] = _json_or(data["handle"], {})
    data["out_vars"] = _json_or(data["out_vars"], [])
    data["delivered"] = bool(data["delivered"])
    return RunRecord(**data)


def _json_or(text: str, empty: Any) -> Any:
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return empty
    return value if isinstance(value, type(empty)) else empty
