"""`latest`: the newest published checkpoint under a prefix, and the `@latest` path token."""
from __future__ import annotations

import posixpath
from typing import Any

from .fsutil import resolve
from .manifest import ManifestError, read_manifest

LATEST_TOKEN = "@latest"


def latest(prefix: str, options: dict[str, Any] | None = None) -> str:
    """URL of the checkpoint directly under `prefix` whose published manifest is newest.

    Only published checkpoints count, so a folder still being written (or left
    half-written by a killed job) is never the answer.
    """
    loc = resolve(prefix, options)
    try:
        children = [info["name"] for info in loc.fs.ls(loc.root, detail=True) if info.get("type") == "directory"]
    except FileNotFoundError:
        children = []
    best: tuple[float, str] | None = None
    for child in children:
        try:
            manifest = read_manifest(loc.fs, child)
        except ManifestError:
            continue  # unreadable manifests are not "published"; `pull` of that folder names the problem
        if manifest is not None and (best is None or (manifest.created, child) > best):
            best = (manifest.created, child)
    if best is None:
        raise FileNotFoundError(f"no published checkpoint under {prefix}: no folder there has a manifest.json yet.")
    return prefix.rstrip("/") + "/" + posixpath.basename(best[1].rstrip("/"))


def resolve_latest(url: str, options: dict[str, Any] | None = None) -> str:
    """Replace a trailing `@latest` component with the newest published checkpoint's URL."""
    head, _, tail = url.rstrip("/").rpartition("/")
    return latest(head, options) if tail == LATEST_TOKEN else url
