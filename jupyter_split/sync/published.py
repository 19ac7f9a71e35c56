"""Published checkpoints: every folder under a storage root that holds a readable manifest.

One listing for every face: `latest` (and the `@latest` path token) takes the newest one
directly under a prefix; `checkpoint_rows` lists a site's (or every site's) checkpoints for
`jupyter-split checkpoints` and the sidebar. Only published checkpoints count, so a folder
still being written (or left half-written by a killed job) is never listed.
"""
from __future__ import annotations

import os
import posixpath
import threading
from collections import OrderedDict
from typing import Any, Hashable, Iterator

from ..config import Config, SiteConfig
from ..residency.locations import redact
from .fsutil import resolve
from .manifest import MANIFEST_NAME, STAGING_NAME, Manifest, ManifestError, is_local, read_manifest

LATEST_TOKEN = "@latest"
#: a storage root may hold years of checkpoints; a listing shows the newest ones
LIMIT = 100


def published(prefix: str, options: dict[str, Any] | None = None, *,
              nested: bool = True) -> Iterator[tuple[str, Manifest]]:
    """(folder relative to `prefix`, manifest) of each published checkpoint under `prefix`: at any
    depth, or with `nested=False` only its direct children. A manifest no one may trust is
    skipped (`pull` of that folder names the problem); a missing prefix lists nothing.

    A manifest is read again only when the listing says it changed (its size and time, or its
    ETag): the sidebar lists every site's checkpoints every 2 s."""
    loc = resolve(prefix, options)
    root = loc.root.rstrip("/")
    try:
        if not nested:
            folders = [(info["name"], None) for info in loc.fs.ls(root, detail=True) if info.get("type") == "directory"]
        elif is_local(loc.fs):
            folders = _local_manifests(root or "/")
        else:
            found = loc.fs.glob(posixpath.join(root, "**", MANIFEST_NAME), detail=True)
            folders = [(posixpath.dirname(path), _version(info)) for path, info in found.items()]
    except FileNotFoundError:
        return
    for folder, version in folders:
        rel = folder.rstrip("/")[len(root):].strip("/")
        if not rel or STAGING_NAME in rel.split("/"):
            continue
        manifest = _read(loc.fs, folder, version)
        if manifest is not None:
            yield rel, manifest


#: manifests read, by (filesystem, folder), each with the version of the file it was read from
_READ: OrderedDict[tuple[Hashable, str], tuple[Hashable, Manifest | None]] = OrderedDict()
_READ_MAX = 20_000
_READ_LOCK = threading.Lock()


def _read(fs: Any, folder: str, version: Hashable | None) -> Manifest | None:
    """The folder's published manifest (None: none, or none to trust), read again only when its version moved."""
    key = (fs.fsid if _has_fsid(fs) else id(fs), folder)
    with _READ_LOCK:
        kept = _READ.get(key)
    if version is not None and kept is not None and kept[0] == version:
        return kept[1]
    try:
        manifest = read_manifest(fs, folder)
    except ManifestError:
        manifest = None
    if version is not None:
        with _READ_LOCK:
            _READ[key] = (version, manifest)
            _READ.move_to_end(key)
            while len(_READ) > _READ_MAX:
                _READ.popitem(last=False)
    return manifest


def _has_fsid(fs: Any) -> bool:
    try:
        return bool(fs.fsid)
    except NotImplementedError:
        return False


def _version(info: dict[str, Any]) -> Hashable | None:
    """What tells one version of a listed file from another: an ETag, else its size and time; None: nothing does."""
    if info.get("ETag"):
        return ("etag", info["ETag"], info.get("size"))
    when = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    return ("time", info.get("size"), str(when)) if when is not None else None


def _local_manifests(root: str) -> list[tuple[str, Hashable]]:
    """(folder, version) of every manifest under `root` on this machine: `os.scandir`, five times
    faster than fsspec's glob, through symlinked folders as that glob goes (each real folder once)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(root)
    found: list[tuple[str, Hashable]] = []
    seen: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(folder))
        except OSError:  # gone or unreadable meanwhile: nothing published there to list
            continue
        for entry in entries:
            try:
                if entry.is_dir():
                    pending.append(entry.path)
                elif entry.name == MANIFEST_NAME and entry.is_file():
                    est = entry.stat()
                    found.append((folder, ("stat", est.st_ino, est.st_size, est.st_mtime_ns)))
            except OSError:
                continue
    return found


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
