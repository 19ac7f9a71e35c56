"""Labels at rest for what tainted runs wrote: `produced.jsonl` beside the audit log.

A checkpoint carries its labels in its manifest; any other file a tainted run writes
(a feature table, an export, its run directory) is listed here with the run's labels,
so a later copy of it, from this process or another on the same machine, carries them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import Config
from .audit import append_record, read_records, who
from .locations import Location, readings

PRODUCED_FILE = "produced.jsonl"


def produced_path(config: Config) -> Path:
    """The register of what tainted runs wrote: `produced.jsonl` beside the audit log."""
    return config.audit_log_path().with_name(PRODUCED_FILE)


def record_produced(config: Config, locations: Iterable[str], labels: Mapping[str, str], run_id: str | None) -> None:
    """List `locations` (absolute paths or URLs) as written by a run that carries `labels`."""
    written = sorted(set(locations))
    if written and labels:
        append_record(produced_path(config), {**who(), "locations": written, "labels": dict(labels), "run_id": run_id},
                      sync=False)  # one a written file batch: durable enough, and never slows the run's writes


class _Index:
    """Produced locations by their normalised readings, and every folder above them."""

    def __init__(self, records: Iterable[dict[str, Any]]):
        self.exact: dict[Location, dict[str, str]] = {}
        self.above: dict[Location, dict[str, str]] = {}
        for record in records:
            run = f"run {record.get('run_id')}" if record.get("run_id") else "a run"
            for location in record.get("locations") or ():
                origins = {str(code): f"{location} was written by {run}, which held {code} data ({why})"
                           for code, why in dict(record.get("labels") or {}).items()}
                for scheme, parts in readings(str(location)):
                    self.exact.setdefault((scheme, parts), {}).update(origins)
                    for cut in range(len(parts)):
                        self.above.setdefault((scheme, parts[:cut]), {}).update(origins)

    def origins(self, url: str, contains: bool, locations: set[Location] | None = None) -> dict[str, str]:
        """Labels of `url` (read as `locations` when given): produced there, or (`contains`) inside it."""
        found: dict[str, str] = {}
        if not self.exact:
            return found
        for scheme, parts in readings(url) if locations is None else locations:
            for cut in range(len(parts), -1, -1):  # the location itself, or a produced one it lies in
                for code, why in self.exact.get((scheme, parts[:cut]), {}).items():
                    found.setdefault(code, why)
            if contains:  # a folder holding produced files
                for code, why in self.above.get((scheme, parts), {}).items():
                    found.setdefault(code, why)
        return found


_cache: dict[Path, tuple[tuple[int, int], _Index]] = {}


def produced_origins(url: str, config: Config, contains: bool = True) -> dict[str, str]:
    """Labels `url` carries because a tainted run wrote it (or, with `contains`, something in it)."""
    return produced_index(config).origins(url, contains)


def produced_index(config: Config) -> _Index:
    """The register of produced locations as it is now (read again only when the file changed)."""
    path = produced_path(config)
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # no register yet (an unusable folder fails at the audit log)
        return _EMPTY
    key = (stat.st_size, stat.st_mtime_ns)
    cached = _cache.get(path)
    if cached is None or cached[0] != key:
        cached = (key, _Index(read_records(path)))
        _cache[path] = cached
    return cached[1]


_EMPTY = _Index(())
