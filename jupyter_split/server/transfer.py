"""The sidebar's pull and push buttons: one published checkpoint to another site, through the guard,
and the guard's dry run that says beforehand whether it would refuse."""
from __future__ import annotations

from typing import Any

from ..config import Config
from ..policy import ResidencyError
from ..residency.audit import dry_run
from ..sync import SyncReport, pull
from ..sync.endpoints import endpoint
from ..sync.engine import CHUNK, CONCURRENCY, check_residency
from ..sync.fsutil import resolve
from ..sync.plan import make_plan


def copy_to_site(config: Config, site: str, name: str, to_site: str) -> SyncReport:
    """Copy `site:name` to the same path on `to_site`; the residency guard refuses before any byte moves."""
    check_sites(config, site, to_site, name)
    return pull(f"{site}:{name}", f"{to_site}:{name}", config)


def check_to_site(config: Config, site: str, name: str, to_site: str) -> dict[str, Any]:
    """Whether `copy_to_site` would be refused, asked of the guard as the copy asks it (the same plan,
    the same files judged, their content scanned where bound abroad), but in its dry run: no byte moves,
    nothing is written at the destination, nothing is audited. Answers {allowed, reasons, labels}."""
    check_sites(config, site, to_site, name)
    source, target = endpoint(f"{site}:{name}", config), endpoint(f"{to_site}:{name}", config)
    src, dest = resolve(source.url, source.options), resolve(target.url, target.options)
    try:
        # planning reads the source's manifest and what the destination holds; it writes nothing
        plan = make_plan(src, dest, deep=False, chunk=CHUNK, workers=CONCURRENCY, require_published=True)
        given = set(plan.source_manifest.labels if plan.source_manifest else [])
        with dry_run():
            labels = check_residency(plan, source.url, target.url, given, config)
    except ResidencyError as exc:
        return {"allowed": False, "reasons": [r.explain() for r in exc.refusals], "message": str(exc),
                "labels": sorted({code for r in exc.refusals for code in r.labels})}
    finally:
        src.close()
        dest.close()
    return {"allowed": True, "reasons": [], "message": "", "labels": sorted(labels)}


def check_sites(config: Config, site: str, to_site: str, name: str) -> None:
    """ConfigError for an unknown site (naming the known ones), ValueError for a copy to the site it is on."""
    config.site(site), config.site(to_site)  # unknown names: a ConfigError that lists the known ones
    if site == to_site:
        raise ValueError(f"checkpoint {name!r} is already on site {site!r}; pick another site to copy it to")
