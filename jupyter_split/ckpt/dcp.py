"""Consolidate a `torch.distributed.checkpoint` folder written abroad into one portable checkpoint.

A DCP folder written by N ranks (FSDP, DTensor, tensor parallel; locally or to S3 through
`FsspecWriter`) holds each tensor in chunks spread over N files. At home one process
reads it through fsspec, assembles whole tensors a shard's worth at a time (ranged reads
of just the chunks needed), and writes them as `jupyter_split.ckpt` shards, so memory
stays near `max_shard_size` however large the model.
"""
from __future__ import annotations

import io
import pickle
import re
import warnings
from typing import Any

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner
from torch.distributed.checkpoint import load as dcp_load
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata

from . import format as fmt
from .. import tracking
from .store import DEFAULT_SHARD_SIZE, guard_read, guard_save, locate, storage, unpublish
from .writer import CheckpointError, ShardWriter
from ..sync.manifest import Manifest

try:
    from torch.distributed.checkpoint import FsspecReader
except ImportError:  # torch >= 2.6 keeps it in a private module but still ships it
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader


class _SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's planner, but non-tensor values are unpickled with `weights_only=True`.

    DCP stores them with torch.save; a checkpoint from another site must not be able to
    run code here, so only plain containers, numbers, strings and tensors are accepted.
    """

    def __init__(self) -> None:
        # keys are already DCP's flat names, and the targets plain tensors: no flattening,
        # so the planner's dict is the caller's and values land where they are read back
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
        self.refused: dict[str, str] = {}

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        try:
            self.original_state_dict[fqn] = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as exc:
            # DCP would wrap a raise from here in its own exception; report it after the load
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
            self.refused[fqn] = found.group(1) if found else str(exc).splitlines()[0]


def consolidate(
    dcp_url: str,
    dest_url: str,
    *,
    max_shard_size: int | str = DEFAULT_SHARD_SIZE,
    storage_options: dict[str, Any] | None = None,
    dest_storage_options: dict[str, Any] | None = None,
    labels: set[str] | list[str] = (),
    overwrite: bool = False,
) -> Manifest:
    """Read the DCP folder at `dcp_url` and publish it as a single portable checkpoint at `dest_url`.

    `storage_options` open the DCP folder (e.g. the S3 endpoint and keys abroad);
    `dest_storage_options` the destination. The result loads with `ckpt.load(dest_url)`,
    nested as it was saved (`{"model": {...}, "optim": {...}}`).
    """
    dcp_url, storage_options = locate(dcp_url, storage_options)
    dest_url, dest_storage_options = locate(dest_url, dest_storage_options)
    reader, metadata = _reader(dcp_url, storage_options)
    tensors = {fqn: md for fqn, md in metadata.state_dict_metadata.items() if isinstance(md, TensorStorageMetadata)}
    for fqn, md in tensors.items():
        if md.properties.dtype not in fmt.NAMES:
            raise CheckpointError(f"{dcp_url}: tensor {fqn!r} has dtype {md.properties.dtype}, which safetensors cannot hold")
    sizes = {fqn: md.size.numel() * md.properties.dtype.itemsize for fqn, md in tensors.items()}
    total = sum(sizes.values())
    found = guard_read(dcp_url, [], total, None)
    all_labels = guard_save(None, dest_url, set(labels) | found, total)
    # the small non-tensor values first: a refused one stops us before any shard is written
    values: dict[str, Any] = {fqn: None for fqn in metadata.state_dict_metadata if fqn not in tensors}
    if values:
        _load(values, reader, dcp_url)
    flat = fmt.flatten(_nest({**{fqn: fmt.Placeholder(fqn) for fqn in tensors}, **values}, metadata))
    batches = fmt.plan_shards(sizes, fmt.parse_size(max_shard_size))
    if flat.tensors:  # tensors inside pickled values (rare): a shard of their own
        clash = sorted(set(flat.tensors) & set(tensors))
        if clash:
            raise CheckpointError(f"{dcp_url}: tensors inside pickled values are named like DCP tensors ({clash[0]!r}); "
                                  "store them as tensors in the state dict instead")
        batches.append(list(flat.tensors))
    files = [fmt.shard_name(i, len(batches)) for i in range(len(batches))]

    fs, root = storage(dest_url, dest_storage_options)
    unpublish(fs, root, dest_url, overwrite)
    metadata = {"format": "pt", "jupyter_split": fmt.FORMAT, "labels": ",".join(all_labels), "source_device": "dcp"}
    with ShardWriter(fs, root, metadata, dest_url) as writer:  # a failure leaves nothing behind
        entries, table = [], {}
        for file, batch in zip(files, batches):
            if batch[0] in flat.tensors:
                state = flat.tensors
            else:
                state = {fqn: torch.empty(tensors[fqn].size, dtype=tensors[fqn].properties.dtype) for fqn in batch}
                _load(state, reader, dcp_url)
            entries.append(writer.write(file, state))
            table.update({name: fmt.table_entry(file, t.dtype, t.shape) for name, t in state.items()})
            del state  # one shard's worth in memory at a time
        document = fmt.tree_document(flat.tree, table, "dcp")
        manifest = writer.finish(entries, document, labels=all_labels, parents=[dcp_url],
                                 extra_meta={"consolidated_from": dcp_url})
    tracking.log_checkpoint(dest_url, manifest)
    return manifest


def _reader(url: str, storage_options: dict[str, Any]) -> tuple[FsspecReader, Metadata]:
    try:
        reader = FsspecReader(url, **storage_options)
        return reader, reader.read_metadata()
    except FileNotFoundError:
        raise CheckpointError(f"{url} has no .metadata file, so it is not a finished torch.distributed.checkpoint "
                              "folder (the save may still be running, or the URL points one level off)") from None


def _load(state: dict[str, Any], reader: FsspecReader, url: str) -> None:
    planner = _SafeLoadPlanner()
    try:
        with warnings.catch_warnings():
            # one process reading on purpose: DCP's "assuming single process" notice is noise here
            warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
            dcp_load(state, storage_reader=reader, planner=planner, no_dist=True)
    except Exception as exc:  # DCP wraps per-rank failures; say which checkpoint and keys
        keys = ", ".join(list(state)[:3]) + (" ..." if len(state) > 3 else "")
        raise CheckpointError(f"{url}: reading {keys} failed: {exc}") from exc
    for fqn, what in planner.refused.items():
        raise CheckpointError(
            f"{url}: DCP entry {fqn!r} is a pickled {what}, not plain data; it is not loaded, since unpickling it "
            "could run code. Save plain values (numbers, strings, lists, dicts, tensors) there instead.")


def _nest(leaves: dict[str, Any], metadata: Metadata) -> Any:
    """Put each flat key back where the saver's nested state had it (DCP keeps the paths)."""
    paths = metadata.planner_data if isinstance(metadata.planner_data, dict) else {}
    root: dict[Any, Any] = {}
    for fqn, value in leaves.items():
        path = paths.get(fqn) or (fqn,)
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    # DCP paths index lists by int; turn {0: a, 1: b} back into [a, b]
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(isinstance(k, int) for k in node) and sorted(node) == list(range(len(node))):
        return [node[i] for i in range(len(node))]
    return node
