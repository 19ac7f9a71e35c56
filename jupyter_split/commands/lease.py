"""`lease`: each site's lease as configured beside the accelerator-hours its runs used, and the cost."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..accelerators.usage import leases
from ..core.split import get_split
from . import Context, arg, verb


@verb("lease", "each site's lease (hours, price, end) beside the accelerator-hours used this month and in all",
      arg("site", nargs="?", help="one site (default: every site)"),
      arg("--runs", action="store_true", help="also list each run's cards, hours and cost"),
      arg("--json", action="store_true", help="the figures as JSON"))
def lease(ctx: Context, args: argparse.Namespace) -> int:
    """Print each site's lease beside its use (and, with --runs, the runs); always returns 0."""
    answer = leases(get_split(), args.site)
    if args.json:
        ctx.print(json.dumps(answer, indent=2, default=str))
        return 0
    ctx.table(["site", "leased", "used (month)", "used (all)", "left", "cost (month)", "cost (all)", "ends"],
              [_row(site) for site in answer["sites"]])
    experiment = answer["experiment"]
    costs = ", ".join(f"{value:g} {currency}" for currency, value in experiment["cost"].items()) or "no price set"
    ctx.print(f"\nexperiment {experiment['name']!r}: {experiment['hours']:g} accelerator-hours, cost {costs}")
    if args.runs:
        rows = [[run["run_id"], site["site"], run["state"], str(run["cards"]), f"{run['hours']:.2f}",
                 _money(run["cost"], site["currency"]), run["source"]]
                for site in answer["sites"] for run in site["runs"]]
        ctx.print("")
        ctx.table(["run", "site", "state", "cards", "hours", "cost", "from"], rows)
    return 0


def _row(site: dict[str, Any]) -> list[str]:
    lease = site["lease"]
    leased = "-" if lease["gpu_hours"] is None else f"{lease['gpu_hours']:g} h" + ("/month" if lease["monthly"] else "")
    left = "-" if site["left"] is None else f"{site['left']:g} h"
    ends = "-" if lease["ends"] is None else f"{lease['ends']} ({site['days_left']} days)"
    return [site["site"], leased, f"{site['month_hours']:g} h", f"{site['hours']:g} h", left,
            _money(site["month_cost"], site["currency"]), _money(site["cost"], site["currency"]), ends]


def _money(value: float | None, currency: str | None) -> str:
    return "-" if value is None else f"{value:,.2f} {currency or ''}".rstrip()
