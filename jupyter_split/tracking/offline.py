"""W&B run files (`run-*.wandb`) read and written with no network and no W&B process.

A run's transaction log is a LevelDB-style log: a 7-byte file header (`:W&B`,
0xBEE1, version 0), then 32 KiB blocks of chunks, each with a crc32 (seeded by
the chunk type), a length and a type (full, first, middle, last). The chunks
carry `wandb_internal_pb2.Record` messages. wandb keeps no reader for it, so
`%split wandb` reads runs here, and `wandb sync` of a home run abroad writes a
filtered copy (only the allowed metrics) with the writer here.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator

from ..errors import SplitError

FILE_HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbFileError(SplitError, ValueError):
    """A file that is not a W&B transaction log, or one damaged before its end."""


def _crc(kind: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF


def iter_payloads(data: bytes, where: str = "run file") -> Iterator[bytes]:
    """Each record's bytes; a torn tail (a run still writing, or killed) ends the stream."""
    if data[:CHUNK_HEADER] != FILE_HEADER:
        raise WandbFileError(f"{where}: not a W&B run file (bad header). Point at a run-*.wandb file.")
    pos, parts = CHUNK_HEADER, []
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:
            pos += left  # the block's tail is zero padding
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        body = data[pos + CHUNK_HEADER: pos + CHUNK_HEADER + length]
        if len(body) < length or (kind == 0 and length == 0):
            return
        if _crc(kind, body) != crc:
            raise WandbFileError(f"{where}: checksum mismatch at byte {pos}; the file is damaged there.")
        pos += CHUNK_HEADER + length
        parts.append(body)
        if kind in (FULL, LAST):
            yield b"".join(parts)
            parts = []


def read_records(path: str | Path, data: bytes | None = None) -> Iterator[Any]:
    """The records of a run file (`data`: its bytes, when read from a remote site)."""
    from wandb.proto import wandb_internal_pb2 as pb

    for payload in iter_payloads(Path(path).read_bytes() if data is None else data, str(path)):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def encode(payloads: Iterable[bytes]) -> bytes:
    """The bytes of a run file holding `payloads`, split across blocks as wandb does."""
    out = bytearray(FILE_HEADER)
    for payload in payloads:
        first = True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < CHUNK_HEADER:
                out += b"\0" * left
                continue
            room = left - CHUNK_HEADER
            piece, payload = payload[:room], payload[room:]
            last = not payload
            kind = FULL if first and last else FIRST if first else LAST if last else MIDDLE
            out += struct.pack("<IHB", _crc(kind, piece), len(piece), kind) + piece
            first = False
            if last:
                break
    return bytes(out)


def write_records(path: str | Path, records: Iterable[Any]) -> None:
    """Write `records` as a new run file at `path`, replacing what was there."""
    Path(path).write_bytes(encode(r.SerializeToString() for r in records))


@dataclass
class WandbRun:
    """What a run file says about one W&B run."""

    path: PurePosixPath
    id: str = ""
    project: str = ""
    entity: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    host: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def offline(self) -> bool:
        """Whether the run was made offline (its folder is `offline-run-*`), so only `wandb sync` can send it."""
        return self.path.parent.name.startswith("offline-run-")

    @property
    def state(self) -> str:
        """`finished` or `failed` once the file records an exit; until then `running` (as is a run cut off)."""
        if self.exit_code is None:
            return "running"
        return "finished" if self.exit_code == 0 else "failed"

    def metrics(self) -> dict[str, Any]:
        """The summary without W&B's own keys (those start with `_`)."""
        return {k: v for k, v in self.summary.items() if not k.startswith("_")}


def _value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value") if hasattr(item, "WhichOneof") else None
    return getattr(item, kind) if kind and kind != "none" else None


def _values(items: Any) -> list[Any]:
    # One JSON document per record, not one per item: reading is mostly this decoding.
    if all(item.value_json for item in items):
        return json.loads("[" + ",".join(item.value_json for item in items) + "]")
    return [_value(item) for item in items]


def _row(items: Any, values: list[Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for item, value in zip(items, values):
        keys = item.nested_key
        if len(keys) == 1:  # the common case, kept cheap: a run's history is most of its file
            row[keys[0]] = value
        else:
            _set(row, list(keys) or [item.key], value)
    return row


def _key(item: Any) -> list[str]:
    return list(item.nested_key) or [item.key]


def _set(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def _drop(target: dict[str, Any], keys: list[str]) -> None:
    for key in keys[:-1]:
        target = target.get(key, {})
    target.pop(keys[-1], None)


def _artifact(record: Any) -> dict[str, Any]:
    return {
        "name": record.name,
        "type": record.type,
        "digest": record.digest,
        "aliases": list(record.aliases),
        "metadata": json.loads(record.metadata) if record.metadata else {},
        "entries": [
            {"path": e.path, "ref": e.ref, "digest": e.digest, "size": e.size}
            for e in record.manifest.contents
        ],
    }


def _apply(run: WandbRun, record: Any) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        r = record.run
        run.id, run.project, run.entity = r.run_id, r.project, r.entity
        run.group, run.job_type, run.name = r.run_group, r.job_type, r.display_name
        run.tags, run.host = list(r.tags), r.host
        _apply_config(run, r.config)
    elif kind == "config":
        _apply_config(run, record.config)
    elif kind == "history":
        items = record.history.item
        run.history.append(_row(items, _values(items)))
    elif kind == "artifact":
        run.artifacts.append(_artifact(record.artifact))
    elif kind == "exit":
        run.exit_code = record.exit.exit_code


def _apply_config(run: WandbRun, config: Any) -> None:
    for item in config.update:
        keys = _key(item)
        if keys[0] != "_wandb":
            _set(run.config, keys, _value(item))
    for item in config.remove:
        _drop(run.config, _key(item))


def load_run(path: str | Path, data: bytes | None = None, history: bool = True) -> WandbRun:
    """Read one run file: its identity, config, summary, history (unless `history=False`:
    the costly part of a long run), artifacts and exit."""
    run = WandbRun(path=PurePosixPath(path))
    # W&B rewrites the summary at every step: keep each key's last item, decode once at the end.
    latest: dict[tuple[str, ...], Any] = {}
    for record in read_records(path, data):
        kind = record.WhichOneof("record_type")
        if kind == "history" and not history:
            continue
        if kind != "summary":
            _apply(run, record)
            continue
        for item in record.summary.update:
            keys = item.nested_key
            latest[tuple(keys) if keys else (item.key,)] = item
        for item in record.summary.remove:
            gone = tuple(_key(item))
            latest = {keys: kept for keys, kept in latest.items() if keys[: len(gone)] != gone}
    for keys, item in latest.items():
        _set(run.summary, list(keys), _value(item))
    return run


def find_run_files(root: str | Path) -> list[Path]:
    """Every run file under `root` (both `offline-run-*` and online `run-*` folders), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    files = {p.resolve() for p in root.rglob("run-*.wandb") if p.parent.name.startswith(("offline-run-", "run-"))}
    return sorted(files, key=lambda p: p.parent.name.removeprefix("offline-").removeprefix("run-"))


def is_metric_key(key: str) -> bool:
    """A user's metric, not one W&B keeps for itself (`_step`, `_runtime`, `_timestamp`, `_wandb`)."""
    return not key.startswith("_")


def filter_records(records: Iterable[Any], keep_metric: Callable[[str], bool],
                   drop_artifacts: Iterable[str] = (), drop_output: bool = False) -> Iterator[Any]:
    """The records of a run with only the metrics `keep_metric` admits (history and summary),
    without the named artifacts and, with `drop_output`, without console output and files."""
    dropped = set(drop_artifacts)
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind in ("output", "output_raw", "files") and drop_output:
            continue
        if kind == "artifact" and record.artifact.name in dropped:
            continue
        if kind == "history":
            _keep_items(record.history.item, keep_metric)
        elif kind == "summary":
            _keep_items(record.summary.update, keep_metric)
            _keep_items(record.summary.remove, keep_metric)
        yield record


def _keep_items(items: Any, keep_metric: Callable[[str], bool]) -> None:
    kept = [item for item in items if not is_metric_key(_key(item)[0]) or keep_metric(_key(item)[0])]
    if len(kept) != len(items):
        copies = [type(item)() for item in kept]
        for copy, item in zip(copies, kept):
            copy.CopyFrom(item)
        del items[:]
        items.extend(copies)
