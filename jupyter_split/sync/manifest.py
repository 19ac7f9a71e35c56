"""The manifest: what publishes a checkpoint.

A checkpoint is a folder (any fsspec URL) holding its files and, written last,
`manifest.json`: every file's relative path, size and sha256, plus the
checkpoint's metadata (producing run and site, residency labels, lineage).
A folder without a manifest is not a checkpoint: readers and `pull` trust only
published manifests.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

from ..errors import SplitError
from ..names import check_name
from . import s3parts, sftp

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
# Where an in-flight copy keeps its parts and resume state, under the destination root.
STAGING_NAME = ".split-staging"

# Stores where one PUT of a whole object is already atomic: readers see the old
# object or the new one, never a torn write, so no temp + rename is needed.
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "oss", "az", "abfs", "abfss", "adl", "memory"})


class ManifestError(SplitError, ValueError):
    """A manifest that exists but cannot be trusted (bad JSON, unknown version, bad entry)."""


@dataclass
class FileEntry:
    """One file of a checkpoint: its posix path relative to the root, its size and its sha256."""

    path: str  # relative to the checkpoint root, posix separators
    size: int
    sha256: str


@dataclass
class Manifest:
    """What a published checkpoint holds, and where it comes from.

    `labels` are residency labels (jurisdictions the data must stay in); `parents` are the
    checkpoints it was made from; `run_id` and `site` name the run that produced it.
    """

    files: list[FileEntry]
    created: float = field(default_factory=time.time)
    run_id: str | None = None
    site: str | None = None
    labels: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    @property
    def total_bytes(self) -> int:
        """The sum of the files' sizes."""
        return sum(entry.size for entry in self.files)

    def by_path(self) -> dict[str, FileEntry]:
        """The entries keyed by relative path."""
        return {entry.path: entry for entry in self.files}

    def to_json(self) -> str:
        """Sorted keys, a line per file: readable, and written by json's C encoder.

        json.dumps with `indent` runs the pure-Python encoder, which took 0.1 s for 10,000
        files; each line here is encoded without it.
        """
        body = {name: getattr(self, name) for name in ("created", "labels", "meta", "parents", "run_id", "site", "version")}
        lines = [f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)}," for key, value in body.items()]
        files = ",\n".join(f'  {{"path": {json.dumps(e.path)}, "sha256": {json.dumps(e.sha256)}, "size": {int(e.size)}}}'
                           for e in sorted(self.files, key=lambda e: e.path))
        return "{\n" + "\n".join(lines) + (f'\n "files": [\n{files}\n ]\n}}\n' if files else '\n "files": []\n}\n')

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "manifest") -> "Manifest":
        """Read a manifest from its JSON text; `where` names it in errors.

        Raises ManifestError for bad JSON, another version, or a file entry that is missing a
        field or whose path would leave the checkpoint's root (the text may come from any store).
        """
        try:
            raw = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{where}: not valid JSON ({exc}). Re-publish the checkpoint from its source.") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("files"), list):
            raise ManifestError(f"{where}: not a jupyter_split manifest (no `files` list).")
        version = raw.get("version", 1)
        if version != MANIFEST_VERSION:
            raise ManifestError(
                f"{where}: manifest version {version!r}; this jupyter_split reads version {MANIFEST_VERSION}. "
                "Upgrade jupyter_split on this side."
            )
        try:
            files = [FileEntry(path=str(f["path"]), size=int(f["size"]), sha256=str(f["sha256"])) for f in raw["files"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: a file entry lacks path, size or sha256 ({exc!r}).") from None
        for entry in files:
            _check_relative(entry.path, where)
            if entry.size < 0:
                raise ManifestError(f"{where}: file {entry.path!r} has a negative size ({entry.size}).")
        known = {"created", "run_id", "site", "labels", "parents", "meta"}
        rest = {key: raw[key] for key in known if key in raw}
        _check_fields(rest, where)
        return cls(files=files, version=version, **rest)


# What each field must be. A field of another type is refused, never read as it comes: labels of
# "CN" read as a list would be the labels C and N, and the checkpoint would lose its residency.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {"created": (int, float), "run_id": (str, type(None)),
                                             "site": (str, type(None)), "labels": (list,), "parents": (list,),
                                             "meta": (dict,)}


def _check_fields(fields: dict[str, Any], where: str) -> None:
    for key, value in fields.items():
        if not isinstance(value, _FIELD_TYPES[key]) or isinstance(value, bool):
            raise ManifestError(f"{where}: `{key}` is {type(value).__name__} {value!r:.80}, not "
                                f"{' or '.join(t.__name__ for t in _FIELD_TYPES[key] if t is not type(None))}. "
                                "Re-publish the checkpoint from its source.")
        if key in ("labels", "parents") and not all(isinstance(item, str) and item for item in value):
            raise ManifestError(f"{where}: `{key}` must list non-empty strings, not {value!r:.80}. "
                                "Re-publish the checkpoint from its source.")


def _check_relative(path: str, where: str) -> None:
    # A manifest is read from a remote store: refuse paths that would escape the root.
    norm = posixpath.normpath(path)
    if path.startswith("/") or norm != path or norm == ".." or norm.startswith("../") or "\\" in path:
        raise ManifestError(f"{where}: file path {path!r} is not a clean relative posix path.")


def check_paths(paths: Iterable[str], where: str) -> None:
    """Refuse, before any byte moves, a file whose name a manifest could not hold and read back
    (`\\`, which readers refuse, and control characters, which object stores garble)."""
    for path in paths:
        check_name(f"file in {where}:", path)


def manifest_path(root: str) -> str:
    """Where the manifest of the checkpoint at `root` lives."""
    return posixpath.join(root.rstrip("/"), MANIFEST_NAME)


def is_object_store(fs: Any) -> bool:
    """Whether one PUT of a whole object is atomic on `fs`, so files need no temp name and rename."""
    return any(p in _OBJECT_STORES for p in _protocols(fs))


def is_local(fs: Any) -> bool:
    """This machine's own files (fsspec's "file" filesystem): paths `os` functions take as they are."""
    return "file" in _protocols(fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    return tuple(fs.protocol) if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)


def publish(fs: Any, root: str, manifest: Manifest, stale: list[str] | None = None) -> None:
    """Write `manifest` under `root`, atomically, after every file it names is in place.

    On object stores one PUT is atomic, and conditional where the store can (S3's
    If-None-Match: writers unpublish before they publish, so a manifest already there
    is another writer's, published meanwhile). Elsewhere the manifest goes to a temp
    name beside its final one and is renamed over it, so a reader sees the old
    manifest or the new one and never a torn one. Then the temp files of killed
    publishers go: `stale` when the caller listed them, else those found now.
    """
    check_paths((entry.path for entry in manifest.files), root)  # never a manifest that cannot be read back
    data = manifest.to_json().encode()
    final = manifest_path(root)
    if is_object_store(fs):
        _put_if_absent(fs, final, data)
        return
    temp = posixpath.join(root.rstrip("/"), f".{MANIFEST_NAME}.{uuid.uuid4().hex}.tmp")
    if sftp.is_sshfs(fs):  # three round trips: a far server makes each one count
        sftp.write_and_rename(fs, temp, final, data)
    else:
        _write_and_replace(fs, root, temp, final, data)
    drop_temp_manifests(fs, root, stale)


def _write_and_replace(fs: Any, root: str, temp: str, final: str, data: bytes) -> None:
    if not fs.isdir(root):
        fs.makedirs(root.rstrip("/") or "/", exist_ok=True)
    with fs.open(temp, "wb") as handle:
        handle.write(data)
        _fsync(handle)
    try:
        replace(fs, temp, final)
    except BaseException:
        _remove_quietly(fs, temp)
        raise


class PublishConflict(FileExistsError):
    """Another writer published a checkpoint at the same place while this one was writing."""


def _put_if_absent(fs: Any, path: str, data: bytes) -> None:
    if not s3parts.supports(fs):
        fs.pipe_file(path, data)
        return
    bucket, key, _ = fs.split_path(path)
    try:
        fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*",
                   **s3parts.content_md5(hashlib.md5(data, usedforsecurity=False).hexdigest()))
    except FileExistsError:  # s3fs's name for 412 Precondition Failed
        raise PublishConflict(
            errno.EEXIST, "another writer published a checkpoint here while this one ran; its manifest was kept. "
            "Run the same copy again to compare with it", path) from None
    except OSError as exc:
        if exc.errno != errno.ENOSYS:  # a store without conditional writes answers 501
            raise
        fs.pipe_file(path, data)
    fs.invalidate_cache(path)


def is_temp_manifest(name: str) -> bool:
    """Whether a file name (no folder) is a manifest temp file, as a killed publisher leaves behind."""
    return name.startswith(f".{MANIFEST_NAME}.") and name.endswith(".tmp") and "/" not in name


def drop_temp_manifests(fs: Any, root: str, stale: list[str] | None = None) -> None:
    """Remove manifest temp files that a writer killed mid-publish left behind (copies into
    one destination are not coordinated, so none other than a dead one's can be there)."""
    if stale is None:
        stale = fs.glob(posixpath.join(root.rstrip("/"), f".{MANIFEST_NAME}.*.tmp"))
    for path in stale:
        _remove_quietly(fs, path)


def replace(fs: Any, temp: str, final: str) -> None:
    """Rename `temp` over `final` (which may exist): local rename, SFTP posix-rename."""
    if sftp.is_sshfs(fs):
        sftp.rename_all(fs, [(temp, final)])
    else:
        fs.mv(temp, final)


def read_manifest(fs: Any, root: str) -> Manifest | None:
    """The published manifest under `root`, or None when the checkpoint is not published."""
    path = manifest_path(root)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None
    return Manifest.from_json(data, where=_describe(fs, path))


class HashingWriter:
    """Wraps a writable binary file: every `write` also feeds a sha256 and a byte count.

    A large chunk is hashed on a helper thread while it is written (both release the GIL),
    so a write costs the slower of the two, not their sum; both are done when `write`
    returns, so the caller may reuse its buffer.
    """

    OVERLAP_MIN = 1 << 20

    def __init__(self, target: BinaryIO):
        self._target = target
        self._hash = hashlib.sha256()
        self._helper: ThreadPoolExecutor | None = None
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        """Write `data` and hash it; returns its length. `data` may be reused once this returns."""
        if len(data) < self.OVERLAP_MIN:
            self._hash.update(data)
            self._target.write(data)
        else:
            if self._helper is None:
                self._helper = ThreadPoolExecutor(1)
            hashed = self._helper.submit(self._hash.update, data)
            self._target.write(data)
            hashed.result()
        self.size += len(data)
        return len(data)

    def hexdigest(self) -> str:
        """The sha256 of everything written so far."""
        return self._hash.hexdigest()

    def entry(self, path: str) -> FileEntry:
        """A manifest entry for what was written, under the relative `path`."""
        return FileEntry(path=path, size=self.size, sha256=self.hexdigest())

    def flush(self) -> None:
        """Flush the wrapped file."""
        self._target.flush()

    def close(self) -> None:
        """Close the wrapped file and stop the hashing thread, if one was started."""
        if self._helper is not None:
            self._helper.shutdown()
        self._target.close()

    def __enter__(self) -> "HashingWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync(handle: Any) -> None:
    # Local files: the manifest must be on disk before the rename makes it visible.
    handle.flush()
    fileno = getattr(handle, "fileno", None)
    if fileno is None:
        return
    try:
        os.fsync(fileno())
    except (OSError, ValueError, AttributeError, NotImplementedError):
        pass  # not a real file descriptor (remote file): the rename alone is what we have


def _remove_quietly(fs: Any, path: str) -> None:
    try:
        fs.rm_file(path)
    except OSError:
        pass  # the temp name is unique and hidden; a later publish does not read it


def _describe(fs: Any, path: str) -> str:
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    return f"{protocol}://{path.lstrip('/')}" if protocol not in ("file", "local") else path
