"""Published checkpoints: every folder under a storage root that holds a readable manifest.

One listing for every face: `latest` (and the `@latest` path token) takes the newest one
directly under a prefix; `checkpoint_rows` lists a site's (or every site's) checkpoints for
`jupyter-split checkpoints` and the sidebar. Only published checkpoints count, so a folder
still being written (or left half-written by a killed job) is never listed.
"""
from __future__ import annotations

import posixpath
from typing import Any, Iterator

from ..config import Config, SiteConfig
from ..residency.locations import redact
from .fsutil import resolve
from .manifest import MANIFEST_NAME, STAGING_NAME, Manifest, ManifestError, read_manifest

LATEST_TOKEN = "@latest"
#: a storage root may hold years of checkpoints; a listing shows the newest ones
LIMIT = 100


def published(prefix: str, options: dict[str, Any] | None = None, *,
              nested: bool = True) -> Iterator[tuple[str, Manifest]]:
    """(folder relative to `prefix`, manifest) of each published checkpoint under `prefix`: at any
    depth, or with `nested=False` only its direct children. A manifest no one may trust is
    skipped (`pull` of that folder names the problem); a missing prefix lists nothing."""
    loc = resolve(prefix, options)
    root = loc.root.rstrip("/")
    try:
        if nested:
            folders = [posixpath.dirname(path) for path in loc.fs.glob(posixpath.join(root, "**", MANIFEST_NAME))]
        else:
            folders = [info["name"] for info in loc.fs.ls(root, detail=True) if info.get("type") == "directory"]
    except FileNotFoundError:
        return
    for folder in folders:
        rel = folder.rstrip("/")[len(root):].strip("/")
        if not rel or STAGING_NAME in rel.split("/"):
            continue
        try:
            manifest = read_manifest(loc.fs, folder)
        except ManifestError:
            continue
        if manifest is not None:
            yield rel, manifest


def latest(prefix: str, options: dict[str, Any] | None = None) -> str:
    """URL of the checkpoint directly under `prefix` whose published manifest is newest."""
    found = [(manifest.created, rel) for rel, manifest in published(prefix, options, nested=False)]
    if not found:
        raise FileNotFoundError(f"no published checkpoint under {prefix}: no folder there has a manifest.json yet.")
    return prefix.rstrip("/") + "/" + max(found)[1]


def resolve_latest(url: str, options: dict[str, Any] | None = None) -> str:
    """Replace a trailing `@latest` component with the newest published checkpoint's URL."""
    head, _, tail = url.rstrip("/").rpartition("/")
    return latest(head, options) if tail == LATEST_TOKEN else url


def checkpoint_rows(config: Config, site: str | None = None,
                    limit: int = LIMIT) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The published checkpoints of `site` (None: every site with storage), newest first, and for
    each site whose storage could not be read, why."""
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    sites = [config.site(site)] if site else list(config.sites.values())
    for one in sites:
        if not one.storage:
            if site:
                errors[one.name] = f"site {one.name!r} has no `storage`: set it under [sites.{one.name}]"
            continue
        try:
            rows += [_row(one, rel, manifest) for rel, manifest in published(one.storage, one.storage_options)]
        except (OSError, ValueError) as exc:
            errors[one.name] = f"cannot list {redact(one.storage)}: {exc}"
    rows.sort(key=lambda row: row["created_ts"], reverse=True)
    return rows[:limit], errors


def _row(site: SiteConfig, rel: str, manifest: Manifest) -> dict[str, Any]:
    return {"site": site.name, "url": redact(site.storage.rstrip("/") + "/" + rel), "name": rel,
            "bytes": manifest.total_bytes, "files": len(manifest.files),
            "residency": ",".join(manifest.labels) or None, "lineage": list(manifest.parents),
            "run_id": manifest.run_id, "created_ts": manifest.created}
