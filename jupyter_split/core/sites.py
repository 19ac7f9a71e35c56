"""What the core says about sites: a row per configured site, and a site's doctor report."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .. import aio, transfer
from ..config import SiteConfig
from ..errors import SplitError

if TYPE_CHECKING:
    from .split import Split


async def rows(split: Split) -> list[dict[str, Any]]:
    """One row per configured site: its settings (executor, jurisdiction, accelerator, storage,
    whether it is home) and what its executor's `describe` found.

    All sites are asked at once. One that cannot be reached gets `reachable: False` and the `error`,
    rather than raising, so one site that is down does not hide the others.
    """
    async def one(site: SiteConfig) -> dict[str, Any]:
        row = {"name": site.name, "executor": site.executor, "jurisdiction": site.jurisdiction,
               "accelerator": site.accelerator, "storage": site.storage,
               "home": site.name == split.config.experiment.home}
        try:
            row.update(await asyncio.wait_for(split.executor(site).describe(), site.connect_timeout + 5))
        except (OSError, SplitError, asyncio.TimeoutError) as exc:
            row.update(reachable=False, error=str(exc) or type(exc).__name__)
        return row
    return list(await asyncio.gather(*(one(s) for s in split.config.sites.values())))


def doctor(split: Split, site: str | None) -> dict[str, Any]:
    """The site's python, workdir and versions beside this process's, and `parity` ("ok", or why
    --in/--out variables cannot travel between them).

    Executors that install jupyter_split on their site (ssh) do that first and report it under
    `install`. Raises where the site cannot be reached.
    """
    from ..protocol import versions

    ex = split.executor(site)
    install = aio.run(ex.doctor())
    remote = aio.run(ex.probe())
    report = {"site": ex.site.name, "executor": ex.kind, "python": ex.python, "workdir": ex.workdir,
              "remote": remote, "local": versions()}
    if install is not None:
        report["install"] = install
    try:
        transfer.check_parity(report["local"], remote, ex.site.name)
        report["parity"] = "ok"
    except transfer.VersionMismatch as exc:
        report["parity"] = str(exc)
    return report
