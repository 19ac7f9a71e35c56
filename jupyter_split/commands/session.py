"""`session`: a site's session (state, the run it executes, the cells queued on it, uptime, memory),
and `--stop` or `--restart` it."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..core import sessions
from ..core.split import get_split
from ..errors import OptionError
from . import Context, arg, verb


@verb("session", "a site's session: state, the run it executes, the cells queued on it, uptime and memory; "
                 "--stop or --restart it",
      arg("site", nargs="?", help="the site (default: every site; --stop and --restart need one)"),
      arg("--stop", action="store_true",
          help="stop the session: the run it executes and the cells queued on it are cancelled"),
      arg("--restart", action="store_true", help="stop the session (as --stop), then start a fresh one"),
      arg("--yes", action="store_true", help="do not ask before --stop or --restart (on a terminal it asks)"),
      arg("--json", action="store_true", help="the report as JSON"))
def session(ctx: Context, args: argparse.Namespace) -> int:
    """Print the session of a site (or of every site); with --stop or --restart, act on it first.
    Returns 1 where a site could not be read or the user declined, else 0."""
    action = _action(args)
    split = get_split()
    if action:
        if not args.yes and not _confirmed(ctx, action, args.site):
            ctx.print(f"not done: the session on site {args.site!r} is left as it was")
            return 1
        done = (sessions.stop if action == "stop" else sessions.restart)(split, args.site)
        ctx.print(done["message"])
        for run in done["cancelled"]:
            ctx.print(f"  {run['run_id']}: {run['state']}")
    answer = sessions.sessions(split, args.site)
    if args.json:
        ctx.print(json.dumps(answer, indent=2, default=str))
    else:
        show(ctx, answer["sites"])
    return 1 if any(row["errors"] for row in answer["sites"]) else 0


def _action(args: argparse.Namespace) -> str | None:
    if args.stop and args.restart:
        raise OptionError("--stop and --restart do not go together: --restart stops the session and starts a new one")
    action = "stop" if args.stop else "restart" if args.restart else None
    if action and not args.site:
        raise OptionError(f"--{action} needs the site whose session to {action}: `session SITE --{action}`")
    return action


def _confirmed(ctx: Context, action: str, site: str) -> bool:
    """Ask on a terminal (the CLI run by hand); elsewhere (a script, a notebook's magic line) the command
    itself is the decision."""
    if ctx.notebook or not sys.stdin.isatty():
        return True
    ctx.out.write(f"{action} the session on site {site!r}? The run it executes and the cells queued on it are "
                  "cancelled, and its variables are lost. [y/N] ")
    ctx.out.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def show(ctx: Context, rows: list[dict[str, Any]]) -> None:
    """The sessions as a table, then the cells queued on each and each site's errors."""
    now = time.time()
    ctx.table(["site", "state", "session", "pid", "uptime", "memory", "running", "queued"],
              [[r["site"], r["state"] if r["supported"] else "none (one runner per cell)", r["session"] or "-",
                r["pid"] or "-", _uptime(now - r["started"]) if r["started"] else "-",
                _memory(r["memory"]), _run(r["running"]), len(r["queue"])]
               for r in rows])
    for r in rows:
        if r["queue"]:
            ctx.print(f"\nqueued on {r['site']}, in the order they run:")
            for n, run in enumerate(r["queue"], 1):  # from which notebook, where its kernel was told
                ctx.print(f"  {n}. {_run(run)}" + (f" from {run['notebook']}" if run.get("notebook") else ""))
        for error in r["errors"]:
            ctx.print(error)


def _run(run: dict[str, Any] | None) -> str:
    if run is None:
        return "-"
    cell = f"In [{run['count']}]: {run['cell']}" if run["count"] else run["cell"]
    return f"{run['run_id']} ({cell})" if cell else run["run_id"]


def _memory(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _uptime(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"
