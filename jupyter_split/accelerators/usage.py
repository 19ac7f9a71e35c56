"""The lease: accelerator-hours used per site, this month and in all, beside what was leased.

Hours come from the run index: each run's time (from its start to the index's last update of a
run that ended, to now for one still going) times the cards it held. The cards are recorded in
the run's handle when it starts (`cards`, from `cards_held`); a run recorded before that counts
as its site's default (one card, none on a `cpu` site). On a Slurm site whose accounting keeps
jobs, `sacct`'s elapsed time and allocated GPUs replace those figures.
"""
from __future__ import annotations

import calendar
import datetime as dt
import re
import time
from typing import TYPE_CHECKING, Any

from .. import aio
from ..errors import SplitError
from ..protocol import TERMINAL_STATES

if TYPE_CHECKING:
    from ..config import SiteConfig
    from ..core.split import Split
    from ..executors.base import Executor
    from ..runs.index import RunRecord

#: the most runs per site whose rows an answer lists (the sums count every run)
RUN_ROWS = 200
#: sacct, one line per job: id, elapsed seconds, allocated trackable resources (gres/gpu=N)
SACCT = ["sacct", "-n", "-P", "-X", "-o", "JobID,ElapsedRaw,AllocTRES", "-j"]


def cards_held(site: "SiteConfig", gpus: int | None, nodes: int | None) -> int:
    """The cards a run holds: `--gpus N` on each of `--nodes M`, else one; none on a `cpu` site."""
    if site.accelerator == "cpu":
        return 0
    return max(gpus or 1, 1) * max(nodes or 1, 1)


def month_start(now: float) -> float:
    """The first instant of `now`'s month, UTC, in seconds since the epoch."""
    day = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    return dt.datetime(day.year, day.month, 1, tzinfo=dt.timezone.utc).timestamp()


def run_span(record: "RunRecord", now: float) -> tuple[float, float]:
    """(start, end) of a run: its runner's start where the handle has it, else when it was recorded; the
    index's last update of a run that ended, else now."""
    start = float(record.handle.get("started") or record.created)
    end = record.updated if record.state in TERMINAL_STATES else now
    return start, max(start, end)


def run_row(record: "RunRecord", site: "SiteConfig", now: float, since: float,
            accounted: dict[str, tuple[float, int]]) -> dict[str, Any]:
    """One run's accelerator-hours, in all and since `since`; Slurm accounting wins where it has the job."""
    start, end = run_span(record, now)
    cards = record.handle.get("cards")
    source = "index" if cards is not None else "default"
    if cards is None:
        cards = cards_held(site, None, None)
    job = record.handle.get("job_id")
    if job in accounted:
        seconds, gpus = accounted[job]
        end, cards, source = start + seconds, gpus or cards, "sacct"
    hours = (end - start) / 3600 * cards
    month = max(0.0, end - max(start, since)) / 3600 * cards
    price = site.lease.price_per_gpu_hour
    return {"run_id": record.run_id, "state": record.state, "cards": cards, "hours": round(hours, 4),
            "month_hours": round(month, 4), "cost": None if price is None else round(hours * price, 2),
            "source": source, "started": start}


async def sacct(ex: "Executor", jobs: list[str]) -> dict[str, tuple[float, int]]:
    """{job: (elapsed seconds, GPUs allocated)} from Slurm accounting; {} where it keeps none."""
    if not jobs:
        return {}
    code, out, _ = await ex.command([*SACCT, ",".join(jobs)])  # type: ignore[attr-defined]
    found: dict[str, tuple[float, int]] = {}
    for line in out.splitlines() if code == 0 else []:
        cells = line.split("|")
        if len(cells) == 3 and cells[1].isdigit():
            gpus = re.search(r"gres/(?:gpu|npu|mlu)[^=]*=(\d+)", cells[2])
            found[cells[0]] = (float(cells[1]), int(gpus.group(1)) if gpus else 0)
    return found


def site_lease(site: "SiteConfig", records: list["RunRecord"], now: float,
               accounted: dict[str, tuple[float, int]]) -> dict[str, Any]:
    """A site's lease as configured beside what its runs used: hours in all and this month, left, cost."""
    lease = site.lease
    since = month_start(now)
    runs = [run_row(r, site, now, since, accounted) for r in records]
    used, month = sum(r["hours"] for r in runs), sum(r["month_hours"] for r in runs)
    budget_used = month if lease.monthly else used
    left = None if lease.gpu_hours is None else round(lease.gpu_hours - budget_used, 2)
    price = lease.price_per_gpu_hour
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
    days = calendar.monthrange(today.year, today.month)[1]
    return {
        "site": site.name, "lease": lease.model_dump(mode="json"), "configured": bool(lease.model_fields_set),
        "hours": round(used, 2), "month_hours": round(month, 2), "left": left,
        "cost": None if price is None else round(used * price, 2),
        "month_cost": None if price is None else round(month * price, 2), "currency": lease.currency,
        "days_left": None if lease.ends is None else (lease.ends - today).days,
        "month_days_left": days - today.day, "runs_counted": len(runs),
        "runs": sorted(runs, key=lambda r: r["started"], reverse=True)[:RUN_ROWS],
    }


def leases(split: "Split", site: str | None = None, now: float | None = None) -> dict[str, Any]:
    """{sites, experiment}: each site's lease beside its use (every site, or one), and the experiment's
    cost in all per currency. Raises ConfigError for an unknown site name."""
    now = time.time() if now is None else now
    sites = [split.config.site(site)] if site else list(split.config.sites.values())
    rows = []
    for config in sites:
        records = split.index.list(config.name, limit=1_000_000)
        accounted: dict[str, tuple[float, int]] = {}
        if config.executor == "slurm":
            try:
                accounted = aio.run(sacct(split.executor(config), [r.handle["job_id"] for r in records
                                                                    if r.handle.get("job_id")]))
            except (OSError, SplitError):
                accounted = {}  # accounting out of reach: the index's figures stand
        rows.append(site_lease(config, records, now, accounted))
    costs: dict[str, float] = {}
    for row in rows:
        if row["cost"] is not None:
            key = row["currency"] or "?"
            costs[key] = round(costs.get(key, 0.0) + row["cost"], 2)
    return {"sites": rows, "experiment": {"name": split.config.experiment.name,
                                          "hours": round(sum(r["hours"] for r in rows), 2), "cost": costs}}
