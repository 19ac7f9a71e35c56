"""`agent`: start, stop or read the agent that runs commands without their start-up cost."""
from __future__ import annotations

import argparse
import time

from ..agent import control
from ..agent.serve import IDLE_MINUTES
from ..errors import OptionError
from . import Context, arg, number, verb


@verb("agent", "start, stop or read the agent: a process kept running between commands, so that each "
               "command starts with its imports done (JUPYTER_SPLIT_AGENT=off runs a command without it)",
      arg("action", nargs="?", choices=["start", "stop", "status"], default="status",
          help="start one (if none runs), stop it, or say whether one runs (the default)"),
      arg("--idle", type=number(float, 0, above=True), default=IDLE_MINUTES, metavar="MINUTES",
          help=f"with start: minutes without a command before it stops (default {IDLE_MINUTES:g})"))
def agent(ctx: Context, args: argparse.Namespace) -> int:
    """Act on the agent; returns 1 for `status` where none runs (as `systemctl status`), else 0."""
    if ctx.notebook:
        ctx.print("the agent speeds up `jupyter-split` at a shell; in a notebook, `%split` runs in the kernel, "
                  "whose imports are done already")
        return 0
    if args.action != "start" and args.idle != IDLE_MINUTES:
        raise OptionError("--idle goes with `agent start` only")
    if args.action == "start":
        answer, started = control.start(args.idle)
        ctx.print(f"agent {'started' if started else 'already running'}: pid {answer['pid']}, stops after "
                  f"{answer['idle_minutes']:g} min without a command; `jupyter-split agent stop` stops it now")
        return 0
    if args.action == "stop":
        pid = control.stop()
        ctx.print(f"agent stopped: pid {pid}" if pid else "no agent runs")
        return 0
    answer = control.status()
    if not answer:
        ctx.print("no agent runs: `jupyter-split agent start` starts one")
        return 1
    ctx.print(f"agent running: pid {answer['pid']}, up {time.time() - answer['since']:.0f} s, "
              f"{answer['served']} command(s) served, stops after {answer['idle_minutes']:g} min without one")
    return 0
