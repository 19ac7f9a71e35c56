"""Portable checkpoints: `save` on CUDA abroad, `load` on whatever accelerator is at home.

The public face is this package (`jupyter_split.ckpt.save`, `.load`, `.consolidate`); the parts are
`api` (save, load), `store` (locations, storage, the guard's checks), `format` (shards and
their index), `writer` (shard writing), `files` (mapping and hashed reads) and `dcp` (sharded
torch.distributed checkpoints).
"""
from .api import LazyCheckpoint, consolidate, load, save
from .store import DEFAULT_SHARD_SIZE, locate
from .writer import CheckpointError, CheckpointWriteError

__all__ = ["DEFAULT_SHARD_SIZE", "LazyCheckpoint", "consolidate", "load", "locate", "save", "CheckpointError",
           "CheckpointWriteError"]
