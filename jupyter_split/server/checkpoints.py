"""Published checkpoints per site, for the sidebar: every folder under a site's storage with a manifest."""
from __future__ import annotations

import posixpath
from typing import Any

from ..config import Config, SiteConfig
from ..residency.locations import redact
from ..sync.fsutil import resolve
from ..sync.manifest import MANIFEST_NAME, STAGING_NAME, ManifestError, read_manifest

#: a storage root may hold years of checkpoints; the sidebar shows the newest ones
LIMIT = 100


def published(config: Config) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Checkpoints newest first, and for each site whose storage could not be read, why."""
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for site in config.sites.values():
        if not site.storage:
            continue
        try:
            rows += _site_checkpoints(site)
        except (OSError, ValueError) as exc:
            errors[site.name] = f"cannot list {redact(site.storage)}: {exc}"
    rows.sort(key=lambda row: row["created_ts"], reverse=True)
    return rows[:LIMIT], errors


def _site_checkpoints(site: SiteConfig) -> list[dict[str, Any]]:
    loc = resolve(site.storage, site.storage_options)
    root = loc.root.rstrip("/")
    try:
        found = loc.fs.glob(posixpath.join(root, "**", MANIFEST_NAME))
    except FileNotFoundError:
        return []
    rows = []
    for path in found:
        folder = posixpath.dirname(path)
        rel = folder[len(root):].strip("/")
        if not rel or STAGING_NAME in rel.split("/"):
            continue
        try:
            manifest = read_manifest(loc.fs, folder)
        except ManifestError:
            continue  # not in a form anyone may trust; `%split pull` of it names the problem
        if manifest is None:
            continue
        rows.append({
            "site": site.name,
            "url": redact(site.storage.rstrip("/") + "/" + rel),
            "name": rel,
            "bytes": manifest.total_bytes,
            "files": len(manifest.files),
            "residency": ",".join(manifest.labels) or None,
            "lineage": list(manifest.parents),
            "run_id": manifest.run_id,
            "created_ts": manifest.created,
        })
    return rows
