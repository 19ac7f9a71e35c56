"""Verbs about sites and runs: sites, runs, attach, logs, cancel, run (doctor: doctor.py)."""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from .. import core
from ..core import logs as run_logs
from ..core.outcome import RemoteError
from ..errors import OptionError
from ..protocol import STATE_NAMES

from .options import RUN_OPTIONS, cell_options, site_argument
from .render import NotebookOutput, TerminalOutput, terminal_view
from . import Context, arg, number, verb


RUN_ID = arg("run", help="the run id (`%%split runs` lists them)")


@verb("sites", "list the configured sites and whether they are reachable")
def sites(ctx: Context, args: argparse.Namespace) -> int:
    """List the configured sites, whether each is reachable, and its latency."""
    split = core.get_split()
    rows = []
    for s in split.sites():
        reach = "yes" if s.get("reachable") else f"no: {s.get('error', '')}"
        if s.get("reachable") and s.get("latency_ms") is not None:
            reach += f" ({s['latency_ms']:.0f} ms)"
        rows.append([s["name"] + (" (home)" if s["home"] else ""), s["executor"], s["jurisdiction"], s["accelerator"],
                     s.get("storage") or "", reach])
    ctx.print(f"config: {split.config.source}")
    ctx.table(["site", "executor", "jurisdiction", "accelerator", "storage", "reachable"], rows)
    return 0


def iso_date(text: str) -> datetime:
    """An argparse `type`: an ISO 8601 date, or date and time, in local time unless it has an offset."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: give YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (ISO 8601; local time unless "
            "an offset such as +00:00 follows), e.g. 2026-11-01") from None


@verb("runs", "list recent runs from the local run index, or prune the old ones",
      arg("--site", help="only this site's runs"),
      arg("--limit", type=number(int, 1), default=20, metavar="N", help="the N most recent runs (default 20)"),
      arg("--state", choices=STATE_NAMES, metavar="STATE", help=f"only the runs in this state ({', '.join(STATE_NAMES)})"),
      arg("--match", metavar="TEXT", help="only the runs whose id or name holds TEXT (any case)"),
      arg("--notebook", metavar="PATH", help="only the runs started from this notebook (its path as Jupyter gives it)"),
      arg("--prune-before", type=iso_date, metavar="DATE",
          help="remove from the index the runs that ended before DATE (YYYY-MM-DD or YYYY-MM-DDTHH:MM); "
               "active runs stay, and the run directories on the sites are kept"),
      arg("--delete-run-dirs", action="store_true",
          help="with --prune-before: also delete those runs' directories on their sites (their logs and "
               "outputs); a run whose directory cannot be deleted keeps its row"))
def runs(ctx: Context, args: argparse.Namespace) -> int:
    """List the most recent runs in the local run index; with --prune-before, remove the rows of the
    runs that ended before that date instead, and say how many."""
    if args.delete_run_dirs and args.prune_before is None:
        raise OptionError("--delete-run-dirs deletes the directories of the runs --prune-before removes: "
                          "give --prune-before DATE too")
    if args.prune_before is not None:
        split = core.get_split()
        from ..core.prune import prune_runs

        done = prune_runs(split, args.prune_before.timestamp(), args.site, delete_dirs=args.delete_run_dirs)
        where = f" on {args.site}" if args.site else ""
        dirs = "and deleted their run directories on the sites" if args.delete_run_dirs else \
            "the run directories on the sites are kept"
        ctx.print(f"removed {len(done.removed)} run{'' if len(done.removed) == 1 else 's'}{where} that ended before "
                  f"{args.prune_before.isoformat(' ')} from the run index ({split.index.path}); active runs stay, "
                  f"{dirs}")
        for run_id, why in done.kept.items():
            ctx.print(f"kept {run_id}: its run directory could not be deleted ({why}); run the prune again "
                      "once its site answers")
        return 1 if done.kept else 0
    rows = []
    for r in core.get_split().list_runs(args.site, args.limit, state=args.state, text=args.match, notebook=args.notebook):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        rows.append([r.run_id, r.site, r.state, r.mode, started, r.last_line[:40]])
    ctx.table(["run", "site", "state", "mode", "started", "last output"], rows)
    return 0


@verb("attach", "replay a run's output and follow it live; deliver its --out variables",
      RUN_ID, arg("--from-last", action="store_true", help="only what was not shown before"),
      arg("--tail", type=number(int, 0), metavar="N", help="start N lines before the end (read back from it, not replayed from the start)"))
def attach(ctx: Context, args: argparse.Namespace) -> int:
    """Replay a run and follow it to its end, delivering its --out variables. In a notebook a
    failed run raises RemoteError (its traceback shows); elsewhere it returns 1."""
    output = NotebookOutput() if ctx.notebook else TerminalOutput(ctx.out)
    outcome = core.get_split().attach(args.run, output, ctx.namespace, from_start=not args.from_last, tail=args.tail)
    if ctx.notebook and not outcome.ok:
        raise RemoteError(outcome)
    if outcome.outputs:
        ctx.print(f"--out variables delivered: {', '.join(outcome.outputs)}")
    if ctx.notebook and output.result is not None:
        from IPython.display import display

        display(output.result)
    return 0 if outcome.ok else 1


@verb("logs", "print a run's output so far (no following)", RUN_ID,
      arg("--after", type=number(int, 0), default=0, metavar="SEQ", help="only the events after this sequence number"),
      arg("--tail", type=number(int, 0), metavar="N", help="only the last N lines (read back from the end, as tail -n)"),
      arg("--rank", type=number(int, 0), default=0, help="another rank's output in a distributed run (rank 0 is the cell's)"))
def logs(ctx: Context, args: argparse.Namespace) -> int:
    """Print a run's (or one rank's) events so far, without following, a batch at a time: the
    memory it takes does not grow with the log."""
    show = TerminalOutput(ctx.out, ctx.out, status=True)
    # a local run's log is read with no config loaded: the Split (and the config) only for another site's
    found = run_logs.open_log(args.run, lambda site: core.get_split().executor(site))
    if args.tail is not None:
        for event in run_logs.tail_lines(*found, args.tail, args.rank):
            if event["seq"] > args.after:
                show(event)
        return 0
    for chunk in run_logs.chunks(*found, args.after, args.rank):
        show.many(chunk)  # a chunk's stream text in one write, one flush per chunk
        ctx.out.flush()
    return 0


@verb("cancel", "end a run (a session run ends its session too)", RUN_ID)
def cancel(ctx: Context, args: argparse.Namespace) -> int:
    """Cancel a run (a session run's session with it) and print its final state."""
    state = core.get_split().cancel(args.run)
    ctx.print(f"{args.run}: {state}")
    return 0


@verb("run", "run a Python file on a site and stream its output", site_argument(required=True),
      arg("file", help="the Python file to run"), *RUN_OPTIONS)
def run(ctx: Context, args: argparse.Namespace) -> int:
    """Run a Python file on a site in a fresh runner; prints the run id when --detach.
    Returns 1 unless it succeeded or was submitted."""
    code = Path(args.file).read_text()
    opts = cell_options(args, fresh=True, view=terminal_view(sys.stderr, args.file))
    outcome = core.get_split().execute(code, opts, None, TerminalOutput(ctx.out))
    if outcome.state == "submitted":
        ctx.print(outcome.run_id)
    return 0 if outcome.ok else 1
