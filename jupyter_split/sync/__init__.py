"""Checkpoint sync between sites: incremental, verified, atomic, resumable.

`copy(src, dest)` between any two fsspec URLs; `push`/`pull` name sites from the
config; `latest(prefix)` finds the newest published checkpoint.
"""
from .endpoints import pull, push
from .engine import SyncError, SyncReport, copy
from .latest import latest
from .manifest import MANIFEST_NAME, FileEntry, HashingWriter, Manifest, ManifestError, publish, read_manifest
from .plan import PlanError

__all__ = [
    "MANIFEST_NAME", "FileEntry", "HashingWriter", "Manifest", "ManifestError", "PlanError", "SyncError",
    "SyncReport", "copy", "latest", "publish", "pull", "push", "read_manifest",
]
