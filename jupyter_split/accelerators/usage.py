"""The lease: accelerator-hours used per site, this month and in all, beside what was leased.

Hours come from the run index: each run's time (from its start to the index's last update of a
run that ended, to now for one still going) times the cards it held. The cards are recorded in
the run's handle when it starts (`cards`, from `cards_held`); a run recorded before that counts
as its site's default (one card, none on a `cpu` site). On a Slurm site whose accounting keeps
jobs, `sacct`'s elapsed time and allocated GPUs replace those figures.

A poll does not walk the whole index: `ledger.Ledger` keeps the ended runs' sums between polls and reads
the index's changes alone (its tests compare it with a walk of every run).
"""
from __future__ import annotations

import calendar
import datetime as dt
import re
import time
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

from .. import aio
from ..errors import SplitError
from ..protocol import TERMINAL_STATES
from .ledger import UNIT, Ledger, units

if TYPE_CHECKING:
    from ..config import SiteConfig
    from ..core.split import Split
    from ..executors.base import Executor
    from ..runs.index import RunRecord

#: the most runs per site whose rows an answer lists (the sums count every run)
RUN_ROWS = 200
#: sacct, one line per job: id, elapsed seconds, allocated trackable resources (gres/gpu=N), state
SACCT = ["sacct", "-n", "-P", "-X", "-o", "JobID,ElapsedRaw,AllocTRES,State", "-j"]
#: Slurm's job states whose figures still change (any other is the job's end: its figures are final)
SLURM_GOING = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
                         "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})


class Accounted(NamedTuple):
    """A job as Slurm accounting has it: its elapsed seconds, the GPUs it was allocated, and whether it ended."""

    seconds: float
    gpus: int
    final: bool = True


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
            accounted: Mapping[str, Accounted]) -> dict[str, Any]:
    """One run's accelerator-hours, in all and since `since`; Slurm accounting wins where it has the job."""
    start, end = run_span(record, now)
    cards = record.handle.get("cards")
    source = "index" if cards is not None else "default"
    if cards is None:
        cards = cards_held(site, None, None)
    job = record.handle.get("job_id")
    if job in accounted:
        seconds, gpus, _ = accounted[job]
        end, cards, source = start + seconds, gpus or cards, "sacct"
    hours = (end - start) / 3600 * cards
    month = max(0.0, end - max(start, since)) / 3600 * cards
    price = site.lease.price_per_gpu_hour
    return {"run_id": record.run_id, "state": record.state, "cards": cards, "hours": round(hours, 4),
            "month_hours": round(month, 4), "cost": None if price is None else round(hours * price, 2),
            "source": source, "started": start}


async def sacct(ex: "Executor", jobs: list[str]) -> dict[str, Accounted]:
    """{job: its `Accounted` figures} from Slurm accounting; {} where it keeps none."""
    if not jobs:
        return {}
    code, out, _ = await ex.command([*SACCT, ",".join(jobs)])  # type: ignore[attr-defined]
    found: dict[str, Accounted] = {}
    for line in out.splitlines() if code == 0 else []:
        cells = line.split("|")
        if len(cells) == 4 and cells[1].isdigit():
            gpus = re.search(r"gres/(?:gpu|npu|mlu)[^=]*=(\d+)", cells[2])
            state = cells[3].split(" ")[0]  # "CANCELLED by 1000"
            found[cells[0]] = Accounted(float(cells[1]), int(gpus.group(1)) if gpus else 0, state not in SLURM_GOING)
    return found


def site_answer(site: "SiteConfig", now: float, used: int, month: int, rows: list[dict[str, Any]],
                counted: int) -> dict[str, Any]:
    """A site's lease as configured beside what its runs used (`used` hours in all, `month` this month, each in
    ten-thousandths: the exact sums of the runs' hours, rounded to four places), left, cost, and the rows of
    the newest `RUN_ROWS` of `rows` by start."""
    lease = site.lease
    used, month = used / UNIT, month / UNIT  # type: ignore[assignment]
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
        "month_days_left": days - today.day, "runs_counted": counted,
        "runs": sorted(rows, key=lambda r: r["started"], reverse=True)[:RUN_ROWS],
    }


def ledger_lease(split: "Split", site: "SiteConfig", now: float) -> dict[str, Any]:
    """A site's lease from its ledger: the ended runs' sums kept between polls, the going runs counted now."""
    since = month_start(now)
    accounting = None
    if site.executor == "slurm":
        def accounting(jobs: list[str]) -> dict[str, Accounted] | None:
            try:
                return aio.run(sacct(split.executor(site), jobs))
            except (OSError, SplitError):
                return None  # accounting out of reach: the index's figures stand
    ledger = Ledger(split.index, site, since, lambda r, acc: run_row(r, site, now, since, acc), RUN_ROWS, accounting)
    hours, month, counted, rows, going, accounted = ledger.use(now)
    going_rows = [run_row(r, site, now, since, accounted) for r in going]
    used = hours + sum(units(r["hours"]) for r in going_rows)
    month_used = month + sum(units(r["month_hours"]) for r in going_rows)
    return site_answer(site, now, used, month_used, going_rows + rows, counted)


def leases(split: "Split", site: str | None = None, now: float | None = None) -> dict[str, Any]:
    """{sites, experiment}: each site's lease beside its use (every site, or one), and the experiment's
    cost in all per currency. Raises ConfigError for an unknown site name."""
    now = time.time() if now is None else now
    sites = [split.config.site(site)] if site else list(split.config.sites.values())
    rows = [ledger_lease(split, config, now) for config in sites]
    costs: dict[str, float] = {}
    for row in rows:
        if row["cost"] is not None:
            key = row["currency"] or "?"
            costs[key] = round(costs.get(key, 0.0) + row["cost"], 2)
    return {"sites": rows, "experiment": {"name": split.config.experiment.name,
                                          "hours": round(sum(r["hours"] for r in rows), 2), "cost": costs}}
