"""The audit log and the declassification register: append-only JSONL files.

Each record is one `write(2)` of one whole line to a file opened with O_APPEND, under
an exclusive lock, so concurrent writers never interleave. A writer killed mid-write (Linux
stops a write to a file between two pages on SIGKILL) or a crash of the machine can still
tear the last line: readers skip a torn line, and the next writer cuts it off before it writes
(under the lock, so its writer is gone), so no record is ever merged with another and the log
is whole lines again. Records hold who, what, where and why: never the data.
"""
from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..errors import SplitError
from ..config import Config, load_config

DECISIONS = ("allowed", "refused", "declassified")
DECLASSIFIED_FILE = "declassified.jsonl"
_DRY_RUN: ContextVar[bool] = ContextVar("jupyter_split_audit_dry_run", default=False)


@contextmanager
def dry_run() -> Iterator[None]:
    """Within it (this thread or task) the guard decides as ever but `audit` writes nothing and no run is
    tainted: to ask whether a transfer would be refused without one happening (the sidebar's buttons)."""
    token = _DRY_RUN.set(True)
    try:
        yield
    finally:
        _DRY_RUN.reset(token)


def dry_running() -> bool:
    """Whether this is a `dry_run`."""
    return _DRY_RUN.get()


def append_record(path: Path, record: dict[str, Any], sync: bool = True) -> None:
    """Append `record` as one line, in one write (synced to disk unless `sync` is False)."""
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # so the torn-tail check below never sees another writer mid-write
        line = _mend_tail(fd) + line
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: only {written} of {len(line)} bytes of an audit record were written (disk full?)")
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


TAIL_WINDOW = 1 << 16  # a record is a few hundred bytes: a tail longer than this is left, on a line of its own


def _mend_tail(fd: int) -> bytes:
    """Make the log end on a whole line before a record is appended; what to write first.

    A torn last line (its writer killed, or the machine crashed) is cut off: it is no record, and
    whole lines are what the log promises. A last record that lacks only its newline gets it.
    """
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return b""
    start = max(0, size - TAIL_WINDOW)
    window = os.pread(fd, size - start, start)
    cut = window.rfind(b"\n")
    if cut < 0 and start > 0:
        return b"\n"  # a tail longer than any record: kept, never glued to the next one
    tail = window[cut + 1:]
    try:
        whole = isinstance(json.loads(tail), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        whole = False
    if whole:
        return b"\n"
    os.ftruncate(fd, start + cut + 1)
    return b""


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Whole records in file order; torn or foreign lines are skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(record, dict):
            yield record


def who() -> dict[str, Any]:
    """Time, user and host for a record."""
    now = time.time()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = str(os.getuid())
    return {
        "time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        "ts": round(now, 6),
        "user": user,
        "host": socket.gethostname(),
    }


class AuditLogError(SplitError, OSError):
    """The residency audit log cannot be written, so what it would record does not go ahead (it fails closed)."""


def audit(config: Config, **fields: Any) -> dict[str, Any]:
    """Append one decision to the residency audit log; an AuditLogError (naming the log and the fix) if it cannot."""
    record = who()
    user = fields.pop("user", None)
    record.update(fields, user=user or record["user"])
    if _DRY_RUN.get():
        return record  # a question is no attempt: only what happens is audited
    path = config.audit_log_path()
    try:
        append_record(path, record)
    except OSError as exc:
        raise AuditLogError(exc.errno, (
            f"the residency audit log {path} cannot be written ({exc.strerror or exc}), so nothing that must be "
            f"recorded there goes ahead: this {fields.get('kind') or 'transfer'} was stopped. Make {path.parent} "
            "writable (or free space there), or point `audit_log` under [policy] at a writable file.")) from exc
    return record


def declassified_path(config: Config) -> Path:
    """The register of declassifications: `declassified.jsonl` beside the audit log."""
    return config.audit_log_path().with_name(DECLASSIFIED_FILE)


def _since_ts(since: str | float | date | datetime | None) -> float | None:
    if since is None or isinstance(since, (int, float)):
        return since
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError:
            raise ValueError(f"--since {since!r} is not a date: write e.g. 2026-11-28 or 2026-11-28T09:00") from None
    if not isinstance(since, datetime):
        since = datetime(since.year, since.month, since.day)
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    return since.timestamp()


def audit_entries(
    decision: str | None = None,
    site: str | None = None,
    since: str | float | date | datetime | None = None,
    config: Config | None = None,
) -> list[dict[str, Any]]:
    """Audit records, oldest first, filtered by decision, site (either end) and time (UTC)."""
    if decision is not None and decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    config = config or load_config()
    start = _since_ts(since)
    found = []
    for record in read_records(config.audit_log_path()):
        if decision and record.get("decision") != decision:
            continue
        if site and site not in (record.get("from_site"), record.get("to_site")):
            continue
        if start is not None and float(record.get("ts", 0)) < start:
            continue
        found.append(record)
    return found
