"""Checkpoint sync between sites: incremental, verified, atomic, resumable."""
from .manifest import MANIFEST_NAME, FileEntry, HashingWriter, Manifest, ManifestError, publish, read_manifest

__all__ = ["MANIFEST_NAME", "FileEntry", "HashingWriter", "Manifest", "ManifestError", "publish", "read_manifest"]
