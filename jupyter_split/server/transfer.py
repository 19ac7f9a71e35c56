"""The sidebar's pull and push buttons: one published checkpoint to another site, through the guard."""
from __future__ import annotations

from ..config import Config
from ..sync import SyncReport, pull


def copy_to_site(config: Config, site: str, name: str, to_site: str) -> SyncReport:
    """Copy `site:name` to the same path on `to_site`; the residency guard refuses before any byte moves."""
    config.site(site), config.site(to_site)  # unknown names: a ConfigError that lists the known ones
    if site == to_site:
        raise ValueError(f"checkpoint {name!r} is already on site {site!r}; pick another site to copy it to")
    return pull(f"{site}:{name}", f"{to_site}:{name}", config)
