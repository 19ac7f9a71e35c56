"""Verbs that move checkpoints: push, pull (`%split push SRC DEST`, `jupyter-split pull SRC [DEST]`)."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from .. import policy, sync
from . import Context, arg, number, verb

WHERE = ("SITE, SITE:path (below the site's storage), a URL, or a local path; "
         "a last component @latest means the newest published checkpoint there")
#: more threads than this only queue behind each other and the link
MAX_CONCURRENCY = 256
OPTIONS = (
    arg("--deep", action="store_true", help="re-read files the destination's manifest vouches for, and repair any that differ"),
    arg("--label", action="append", default=[], metavar="CC", help="residency label for an unpublished source (repeatable)"),
    arg("--concurrency", type=number(int, 1, MAX_CONCURRENCY), default=sync.engine.CONCURRENCY, metavar="N",
        help=f"files in flight at once (1 to {MAX_CONCURRENCY})"),
    arg("--quiet", action="store_true", help="no progress bar"),
)


@verb("push", "copy a checkpoint to a site: incremental, verified, published atomically, resumable",
      arg("src", help=WHERE), arg("dest", help=WHERE + "; a bare SITE or a trailing / puts SRC under it by name"), *OPTIONS)
def push(ctx: Context, args: argparse.Namespace) -> int:
    return _copy(ctx, sync.push, args, args.dest)


@verb("pull", "copy a published checkpoint from a site (to the same path at home unless DEST is given)",
      arg("src", help=WHERE), arg("dest", nargs="?", help=WHERE), *OPTIONS)
def pull(ctx: Context, args: argparse.Namespace) -> int:
    return _copy(ctx, sync.pull, args, args.dest)


def _copy(ctx: Context, func: Callable[..., sync.SyncReport], args: argparse.Namespace, dest: Any) -> int:
    options: dict[str, Any] = {"deep": args.deep, "concurrency": args.concurrency,
                               "progress": False if args.quiet else (True if ctx.notebook else None)}
    if args.label:
        options["labels"] = args.label
    try:
        report = func(args.src, dest, **options)
    except (sync.SyncError, sync.PlanError, sync.ManifestError, policy.ResidencyError, FileNotFoundError) as exc:
        print(f"{args.verb}: {exc}", file=sys.stderr)
        return 1
    ctx.print(report)
    return 0
