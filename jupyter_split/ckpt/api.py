"""Portable checkpoints: save on CUDA abroad, load on whatever accelerator is at home.

`save(state, url)` writes the tensors as safetensors shards of bounded size and the rest
as JSON, through fsspec, hashing every byte as it is written, and publishes the sync
manifest last (residency labels, lineage, dtypes, source device). `load(url)` verifies
every file against that manifest before a tensor from it is returned, maps the tensors
onto the local device and widens dtypes the device lacks (bf16 to fp16 or fp32).
"""
from __future__ import annotations

import json
import os
import posixpath
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from . import format as fmt
from .. import tracking, verified
from .files import map_local, read_remote
from . import store
from .store import DEFAULT_SHARD_SIZE, guard_read, guard_save, locate, storage, unpublish
from .writer import CheckpointError, ShardWriter
from ..config import load_config
from ..accelerators.devices import DeviceInfo, detect, info_for
from ..sync.manifest import Manifest, is_local, read_manifest

_FP16_MAX = 65504.0


def _workers(jobs: int) -> int:
    return max(1, min(jobs, os.cpu_count() or 1, 8))


# --- save -------------------------------------------------------------------------------

def save(
    state: Any,
    url: str,
    *,
    max_shard_size: int | str = DEFAULT_SHARD_SIZE,
    labels: set[str] | list[str] = (),
    parents: list[str] = (),
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Manifest:
    """Write `state` (a state_dict, or nested dicts/lists of tensors and plain values) to `url`
    (a URL, a local path, or `SITE:path` under a site's storage).

    Labels are the current run's residency labels plus `labels`; parents are the
    checkpoints this process loaded plus `parents`. Returns the published manifest.

    Raises ResidencyError where the guard refuses the destination (before the first byte),
    FormatError for a value that cannot be saved portably, CheckpointError where `url`
    already holds a checkpoint and `overwrite` is False. A save that fails leaves nothing.
    """
    flat = fmt.flatten(state)
    limit = fmt.parse_size(max_shard_size)
    url, storage_options = locate(url, storage_options)
    sizes = {n: fmt.nbytes(t) for n, t in flat.tensors.items()}
    all_labels = guard_save(state, url, labels, sum(sizes.values()), tree=flat.tree, tensors=flat.tensors.values())
    fs, root = storage(url, storage_options)
    unpublish(fs, root, url, overwrite)
    names = fmt.plan_shards(sizes, limit)
    files = [fmt.shard_name(i, len(names)) for i in range(len(names))]
    source = _source_device(flat.tensors)
    metadata = {"format": "pt", "jupyter_split": fmt.FORMAT, "labels": ",".join(all_labels), "source_device": source}
    with ShardWriter(fs, root, metadata, url) as writer, ThreadPoolExecutor(_workers(len(files))) as pool:
        entries = list(pool.map(lambda pair: writer.write(pair[0], {n: flat.tensors[n] for n in pair[1]}), zip(files, names)))
        table = {n: fmt.table_entry(file, flat.tensors[n].dtype, flat.tensors[n].shape) for file, group in zip(files, names) for n in group}
        document = fmt.tree_document(flat.tree, table, source)
        manifest = writer.finish(entries, document, labels=all_labels, parents=[*store.LOADED, *parents])
    tracking.log_checkpoint(url, manifest)
    return manifest


def _source_device(tensors: dict[str, torch.Tensor]) -> str:
    kinds = sorted({str(t.device) for t in tensors.values()})
    return ",".join(kinds) or "none"


# --- load -------------------------------------------------------------------------------

def load(
    url: str,
    device: str | torch.device | DeviceInfo = "auto",
    dtype: torch.dtype | None = None,
    lazy: bool = False,
    *,
    verify: str = "auto",
    storage_options: dict[str, Any] | None = None,
) -> Any:
    """The state saved at `url`, every file verified against the manifest, on `device`.

    `url` is a URL, a local path or `SITE:path`; a last component `@latest` picks the
    newest published checkpoint there (`load("home:run-7/@latest")`).

    `device="auto"` is this machine's accelerator (inside a cell, pass `device=device`
    to follow the site's setting). `dtype=None` keeps each tensor's dtype unless the
    device lacks it: bf16 becomes fp16 where the device has fp16 (fp32 for a tensor
    beyond fp16's range), else fp32. A floating `dtype` casts every floating tensor.
    `lazy=True` returns a `LazyCheckpoint` that reads one shard at a time.

    Each file's sha256 must match the manifest's. `verify="auto"` takes it, for a local
    file this machine hashed before and that has not changed since (same inode, size,
    mtime and ctime: see `jupyter_split.verified`), from that record instead of reading
    the file again; `verify="always"` reads and hashes every byte on every load.

    Raises CheckpointError for a checkpoint that is missing, unfinished or corrupt, and
    ResidencyError where the guard refuses to copy it here.
    """
    checkpoint = LazyCheckpoint(url, device, dtype, verify=verify, storage_options=storage_options)
    return checkpoint if lazy else checkpoint.state()


class LazyCheckpoint(Mapping[str, torch.Tensor]):
    """A published checkpoint read on demand: `ckpt[name]`, `iter_shards()`, `state()`.

    Each shard is read whole and verified before any tensor of it is handed out; the
    last shard read is kept, so walking tensor names in order reads each shard once.

    Opening one reads the manifest, asks the residency guard, and reads the JSON tree; it
    raises as `load` does.
    """

    def __init__(self, url: str, device: Any = "auto", dtype: torch.dtype | None = None, *, verify: str = "auto",
                 storage_options: dict[str, Any] | None = None):
        if dtype is not None and not dtype.is_floating_point:
            raise CheckpointError(f"dtype={dtype} is not a floating dtype; pass e.g. torch.float16, or None to keep each tensor's own")
        if verify not in ("auto", "always"):
            raise CheckpointError(f"verify={verify!r} is not one of 'auto' (trust this machine's record of an unchanged "
                                  "file's hash) or 'always' (read and hash every byte)")
        self.dtype, self.verify = dtype, verify
        self.info = device if isinstance(device, DeviceInfo) else detect() if str(device) == "auto" else info_for(str(device))
        self.device = torch.device(self.info.device if isinstance(device, DeviceInfo) or str(device) == "auto" else device)
        config = load_config()  # one read of the config for the whole load
        url, storage_options = locate(url, storage_options, config)
        self.url = url
        self.fs, self.root = storage(url, storage_options)
        manifest = read_manifest(self.fs, self.root)
        if manifest is None:
            raise CheckpointError(
                f"{url} has no manifest.json, so it is not a published checkpoint (its save did not finish, or it is "
                "a torch.distributed.checkpoint folder: use jupyter_split.ckpt.consolidate on that)")
        if manifest.meta.get("format") != fmt.FORMAT:
            raise CheckpointError(f"{url}: manifest format {manifest.meta.get('format')!r} is not {fmt.FORMAT!r}; "
                                  "it was not written by jupyter_split.ckpt.save (use jupyter_split.sync to copy it instead)")
        guard_read(url, manifest.labels, manifest.total_bytes, [e.path for e in manifest.files], config)
        tracking.use_checkpoint(url, manifest)
        self.manifest = manifest
        self._files = manifest.by_path()
        document = json.loads(self._read(fmt.TREE_NAME).numpy().tobytes())
        self.tree, self.tensors = document["tree"], document["tensors"]
        self._cache: tuple[str, dict[str, torch.Tensor]] | None = None

    @property
    def labels(self) -> list[str]:
        """The residency labels in the checkpoint's manifest; opening it labelled this run with them."""
        return list(self.manifest.labels)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise KeyError(f"{name!r} is not a tensor of {self.url}")
        shard = self.tensors[name]["shard"]
        if self._cache is None or self._cache[0] != shard:
            self._cache = (shard, self._load_shard(shard))
        return self._cache[1][name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def shard_names(self) -> list[str]:
        """The shard files that hold tensors, each once, in the order of the tensor table."""
        return list(dict.fromkeys(info["shard"] for info in self.tensors.values()))

    def iter_shards(self) -> Iterator[dict[str, torch.Tensor]]:
        """Each shard's tensors, mapped and cast, one shard in memory at a time."""
        for shard in self.shard_names():
            yield self._load_shard(shard)

    def state(self) -> Any:
        """The whole state, as saved, with tensors on the target device."""
        shards = self.shard_names()
        if self._all_recorded(shards):
            parts = [self._load_shard(shard) for shard in shards]  # only mapped: threads would cost more
        else:
            with ThreadPoolExecutor(_workers(len(shards))) as pool:  # hashed, a core each
                parts = list(pool.map(self._load_shard, shards))
        loaded = {name: tensor for part in parts for name, tensor in part.items()}
        return fmt.unflatten(self.tree, loaded.__getitem__)

    def _all_recorded(self, shards: list[str]) -> bool:
        """Whether every shard is a local file this machine has a record of, unchanged."""
        if self.verify != "auto" or not is_local(self.fs):
            return False
        try:
            return all(verified.known_sha256(os.stat(posixpath.join(self.root, shard))) == self._files[shard].sha256
                       for shard in shards)
        except (OSError, KeyError):
            return False  # the load names what is missing

    def _load_shard(self, shard: str) -> dict[str, torch.Tensor]:
        raw = fmt.read_shard(self._read(shard), f"{self.url}/{shard}")
        if self.device.type == "cpu" and all(self._kept(dtype) for dtype in {t.dtype for t in raw.values()}):
            return raw  # nothing to move or cast
        return {name: self._place(name, tensor) for name, tensor in raw.items()}

    def _place(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        target = self._target_dtype(name, tensor)
        if target == tensor.dtype and self.device.type == "cpu":
            return tensor
        return tensor.to(device=self.device, dtype=target)

    def _kept(self, dtype: torch.dtype) -> bool:
        """Whether tensors of `dtype` load as they are, uncast."""
        if not dtype.is_floating_point:
            return True
        if self.dtype is not None:
            return self.dtype == dtype
        kind = str(dtype).removeprefix("torch.")
        return self.info.supports(kind) or kind not in ("bfloat16", "float16")

    def _target_dtype(self, name: str, tensor: torch.Tensor) -> torch.dtype:
        if self._kept(tensor.dtype):
            return tensor.dtype
        if self.dtype is not None:
            return self.dtype
        if tensor.dtype == torch.bfloat16 and self.info.fp16:
            if tensor.numel() and tensor.abs().max().item() > _FP16_MAX:
                warnings.warn(f"{self.url}: {name} exceeds fp16's range; loaded as fp32 instead of fp16", RuntimeWarning, stacklevel=4)
                return torch.float32
            return torch.float16
        return torch.float32

    def _read(self, name: str) -> torch.Tensor:
        """One file of the checkpoint, read whole and checked against the manifest's size and sha256."""
        entry = self._files.get(name)
        where = f"{self.url}/{name}"
        if entry is None:
            raise CheckpointError(f"{where} is not listed in the manifest; the checkpoint is incomplete or was edited by hand. Re-save it.")
        path = posixpath.join(self.root, name)
        try:
            if is_local(self.fs):
                buffer, digest = map_local(path, entry.size, entry.sha256 if self.verify == "auto" else None)
            else:
                buffer, digest = read_remote(self.fs, path, entry.size)
        except FileNotFoundError:
            raise CheckpointError(f"{where} is missing (the manifest lists it); copy the checkpoint again with `%split pull`.") from None
        if buffer is None:
            raise CheckpointError(f"{where} is corrupt: its size differs from the manifest's {entry.size} bytes; "
                                  "copy it again or re-save the checkpoint")
        if digest != entry.sha256:
            raise CheckpointError(f"{where} is corrupt: sha256 {digest[:16]}… differs from the manifest's "
                                  f"{entry.sha256[:16]}…; copy it again or re-save the checkpoint")
        return buffer


def consolidate(dcp_url: str, dest_url: str, **kwargs: Any) -> Manifest:
    """A `torch.distributed.checkpoint` folder (e.g. FsspecWriter output) as one portable checkpoint.

    See `jupyter_split.ckpt.dcp.consolidate`; it streams tensor by tensor, holding one shard's worth.
    """
    from .dcp import consolidate as run

    return run(dcp_url, dest_url, **kwargs)
