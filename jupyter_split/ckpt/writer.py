"""Writing a portable checkpoint: its shards and JSON tree, each file whole or not at all, then the manifest.

A save that fails (a full disk, a lost link, a bad tensor) leaves nothing behind: every
file goes to a hidden temp name and is renamed into place once whole (one upload is
atomic already on an object store), and the files the save had finished are removed.
Its error names the file of the checkpoint, the storage, and the fix.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO, Callable, TypeVar

import torch

from ..errors import SplitError
from . import format as fmt
from ..sync.manifest import (MANIFEST_NAME, FileEntry, HashingWriter, Manifest, _remove_quietly, is_local,
                             is_object_store, publish, replace)

T = TypeVar("T")


class CheckpointError(SplitError, RuntimeError):
    """A checkpoint that cannot be written or trusted; the message names the file and the fix."""


class CheckpointWriteError(OSError, CheckpointError):
    """A file of a checkpoint that could not be written (a full disk, no permission), with its errno."""


class ShardWriter:
    """Writes shards and the JSON tree under `root` (`url`), hashing as it writes, then publishes.

    Each file appears whole or not at all; used as a context manager, a failure removes
    every file it wrote, so a save that fails leaves nothing behind.
    """

    def __init__(self, fs: Any, root: str, metadata: dict[str, str], url: str | None = None):
        self.fs, self.root, self.metadata, self.url = fs, root, metadata, url or root
        self.written: list[str] = []
        with self._named(""):
            fs.makedirs(root, exist_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is not None:
            for path in self.written:
                _remove_quietly(self.fs, path)

    def write(self, name: str, tensors: dict[str, torch.Tensor]) -> FileEntry:
        """Write one shard of `tensors` whole and return its manifest entry (size, sha256).

        `save` calls it from several threads at once. Raises CheckpointWriteError naming the file and the fix.
        """
        def fill(handle: Any) -> HashingWriter:
            with HashingWriter(handle) as out:
                fmt.write_shard(out, tensors, self.metadata)
            return out
        return self._write(name, fill).entry(name)

    def _write(self, name: str, fill: Callable[[BinaryIO], T]) -> T:
        path = posixpath.join(self.root, name)
        with self._named(name):
            result = write_whole(self.fs, path, fill)
        self.written.append(path)
        return result

    @contextlib.contextmanager
    def _named(self, name: str) -> Iterator[None]:
        """An OSError inside becomes a CheckpointWriteError naming the file `name` of this checkpoint
        (its folder: "") and the fix."""
        try:
            yield
        except OSError as exc:
            where = f"{self.url}/{name}" if name else self.url
            raise CheckpointWriteError(exc.errno, write_failure(exc, where, is_local(self.fs))) from exc

    def finish(self, entries: list[FileEntry], document: dict[str, Any], *, labels: list[str], parents: list[str],
               extra_meta: dict[str, Any] | None = None) -> Manifest:
        """Write the JSON tree, then publish the manifest (files, labels, parents, dtypes, source device).

        The manifest goes last, so a reader sees the checkpoint only once every file is whole. Returns it.
        """
        data = json.dumps(document, separators=(",", ":")).encode()
        self._write(fmt.TREE_NAME, lambda handle: handle.write(data))
        entries = [*entries, FileEntry(fmt.TREE_NAME, len(data), hashlib.sha256(data).hexdigest())]
        dtypes: dict[str, int] = {}
        for info in document["tensors"].values():
            dtypes[info["dtype"]] = dtypes.get(info["dtype"], 0) + 1
        manifest = Manifest(
            files=entries, run_id=os.environ.get("JUPYTER_SPLIT_RUN_ID"), site=os.environ.get("JUPYTER_SPLIT_SITE"),
            labels=labels, parents=list(dict.fromkeys(parents)),
            meta={"kind": "checkpoint", "format": fmt.FORMAT, "dtypes": dtypes, "tensors": len(document["tensors"]),
                  "source_device": document["source_device"], "torch": torch.__version__, **(extra_meta or {})},
        )
        with self._named(MANIFEST_NAME):
            publish(self.fs, self.root, manifest)  # a temp name and a rename too: whole or not at all
        return manifest


def write_whole(fs: Any, path: str, fill: Callable[[BinaryIO], T]) -> T:
    """`fill(handle)` writes the file `path`, which then appears whole or not at all.

    Where a rename is atomic (this machine, SFTP) the bytes go to a hidden temp name beside
    `path`, renamed over it once all are written; on an object store one upload is atomic
    already. On any failure what was written is removed: no partial file is left behind.
    """
    folder, name = posixpath.split(path)
    temp = path if is_object_store(fs) else posixpath.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with fs.open(temp, "wb") as handle:
            result = fill(handle)
        if temp != path:
            replace(fs, temp, path)
    except BaseException:
        _remove_quietly(fs, temp)  # an object store may have committed a torn upload as it closed
        raise
    return result


def write_failure(exc: OSError, where: str, local: bool) -> str:
    """What `ckpt.save` says when the file `where` (URL/name) could not be written: why, and
    for this machine's disk the fix (other storages' errors say theirs)."""
    fixes = {
        errno.ENOSPC: "Free space on that disk or save to another storage.",
        errno.EDQUOT: "Raise your quota there, free space, or save to another storage.",
        errno.EFBIG: "The shard is larger than this process may write (the file size limit, `ulimit -f`, or the "
                     "filesystem's largest file): raise the limit or pass a smaller max_shard_size.",
        errno.EROFS: "That filesystem is read-only: save to a writable folder.",
        errno.EACCES: "That folder is not writable by you: fix its permissions or save elsewhere.",
    }
    fix = fixes.get(exc.errno or 0, "") if local else ""
    return (f"ckpt.save {where}: it could not be written ({exc.strerror or exc}). {fix + ' ' if fix else ''}"
            "Nothing of this save was left there (no shard, no manifest); run the save again once that is fixed.")
