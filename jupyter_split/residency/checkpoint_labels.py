"""Which labelled checkpoint a local file belongs to: the labels in the manifest of the nearest
folder above it that has one. A run reading any file of a labelled checkpoint reads labelled data.
"""
from __future__ import annotations

import json
import os
import sys

from .locations import recent

# Files of the interpreter and its libraries are never data: skip the manifest search there.
LIBRARIES = tuple({os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}) + ("/proc/", "/sys/", "/dev/")

_manifest_labels: dict[tuple[str, int, int], tuple[str, ...]] = {}
_manifest_seen: dict[str, tuple[float, tuple[str, tuple[str, ...]]]] = {}


def checkpoint_origins(path: str, manifest_name: str) -> dict[str, str]:
    """Labels of the published checkpoint a local file belongs to (its manifest in a folder above)."""
    absolute = os.path.abspath(path)
    if absolute.startswith(LIBRARIES) or os.path.basename(absolute) == manifest_name:
        return {}  # reading a manifest is reading metadata, not the data
    root, labels = _checkpoint_of(os.path.dirname(absolute), manifest_name)
    return {code: f"part of the checkpoint {root}, labelled {code} in its manifest" for code in labels}


def _checkpoint_of(folder: str, manifest_name: str) -> tuple[str, tuple[str, ...]]:
    """The nearest folder at or above `folder` whose manifest carries labels, and those labels."""
    def search(here: str) -> tuple[str, tuple[str, ...]]:
        labels = _read_labels(os.path.join(here, manifest_name))
        parent = os.path.dirname(here)
        if labels or parent == here:
            return here, labels
        return _checkpoint_of(parent, manifest_name)

    return recent(_manifest_seen, folder, search)


def _read_labels(manifest: str) -> tuple[str, ...]:
    try:
        stat = os.stat(manifest)
    except OSError:
        return ()
    key = (manifest, stat.st_mtime_ns, stat.st_size)
    if key not in _manifest_labels:
        try:
            with open(manifest, "rb") as handle:  # the hook is busy: this open is not seen again
                labels = json.loads(handle.read()).get("labels") or []
        except (OSError, ValueError, AttributeError):
            labels = []
        _manifest_labels[key] = tuple(str(code) for code in labels)
    return _manifest_labels[key]
