"""`push` and `pull`: copies named by site (`SITE:path`) instead of by URL and credentials."""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, ConfigError, SiteConfig, load_config
from ..names import check_location, check_site_path
from .engine import SyncReport, copy
from .published import resolve_latest


@dataclass
class Endpoint:
    """One side of a push or pull: the URL and storage options to open, and the site when named by site."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    site: SiteConfig | None = None
    rel: str = ""  # the path below the site's storage root, when named by site


def endpoint(spec: str, config: Config) -> Endpoint:
    """Read `SITE`, `SITE:path`, a URL or a local path; `@latest` as the last component resolves.

    A name some layer would misread, or a path that leaves the site's storage, is refused here
    (`names.NameRefused`), before anything is opened.
    """
    if "://" in spec:
        return Endpoint(url=resolve_latest(check_location("checkpoint location", spec)))
    name, colon, rel = spec.partition(":")
    if colon or spec in config.sites:
        if name not in config.sites:
            raise ConfigError(
                f"{spec!r}: {name!r} is not a site (config: {config.source}); sites are {', '.join(sorted(config.sites))}. "
                "Write SITE:path, a URL, or a local path."
            )
        site = config.sites[name]
        if not site.storage:
            raise ConfigError(f"site {name!r} has no `storage` URL (config: {config.source}). Add storage = \"s3://...\" or \"file:///...\" to [sites.{name}].")
        rel = check_site_path(f"checkpoint path on site {name!r}", rel).strip("/")
        url = site.storage.rstrip("/") + ("/" + rel if rel else "")
        url = resolve_latest(url, site.storage_options)
        rel = url[len(site.storage.rstrip("/")):].strip("/")
        return Endpoint(url=url, options=dict(site.storage_options), site=site, rel=rel)
    return Endpoint(url=resolve_latest(os.path.abspath(os.path.expanduser(check_location("checkpoint location", spec)))))


def push(src: str, dest: str, config: Config | None = None, **options: Any) -> SyncReport:
    """Copy a local folder, file or site path to a site: `push("out/ckpt-300", "sg:ckpts")`.

    A bare site name (or a path ending in `/`) puts the source under it by its own name.
    """
    config = config or load_config()
    source = endpoint(src, config)
    return _run(source, _target(dest, source, config), config, require_published=False, **options)


def pull(src: str, dest: str | None = None, config: Config | None = None, **options: Any) -> SyncReport:
    """Copy a published checkpoint from a site: `pull("sg:ckpts/@latest")` lands it at home, same path."""
    config = config or load_config()
    source = endpoint(src, config)
    if dest is None:
        if source.site is None:
            raise ConfigError(f"pull {src!r}: name a destination, or name the source as SITE:path to land it at the same path at home.")
        target = endpoint(f"{config.experiment.home}:{source.rel}", config)
    else:
        target = _target(dest, source, config)
    return _run(source, target, config, require_published=True, **options)


def _target(dest: str, source: Endpoint, config: Config) -> Endpoint:
    target = endpoint(dest, config)
    if dest in config.sites or dest.endswith("/"):
        name = check_site_path(f"checkpoint name on {dest!r}", posixpath.basename(source.url.rstrip("/")))
        return Endpoint(url=target.url.rstrip("/") + "/" + name, options=target.options, site=target.site,
                        rel=posixpath.join(target.rel, name))
    return target


def _run(source: Endpoint, target: Endpoint, config: Config, *, require_published: bool, **options: Any) -> SyncReport:
    if source.site is not None:
        options.setdefault("site", source.site.name)
    return copy(source.url, target.url, source.options, target.options, require_published=require_published,
                config=config, **options)
