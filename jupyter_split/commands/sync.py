"""Verbs of checkpoints: list the published ones, push and pull them (`%split push SRC DEST`,
`jupyter-split pull SRC [DEST]`, `jupyter-split checkpoints --site sg`)."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

from .. import policy, sync
from ..config import load_config
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
    """Copy a checkpoint to a site; returns 1 (the reason on stderr) when it cannot."""
    return _copy(ctx, sync.push, args, args.dest)


@verb("pull", "copy a published checkpoint from a site (to the same path at home unless DEST is given)",
      arg("src", help=WHERE), arg("dest", nargs="?", help=WHERE), *OPTIONS)
def pull(ctx: Context, args: argparse.Namespace) -> int:
    """Copy a published checkpoint from a site; returns 1 (the reason on stderr) when it cannot."""
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


@verb("checkpoints", "list the published checkpoints in the sites' storage, newest first",
      arg("--site", help="only this site's storage"),
      arg("--limit", type=number(int, 1), default=sync.published.LIMIT, metavar="N", help="show at most N"))
def checkpoints(ctx: Context, args: argparse.Namespace) -> int:
    """List the published checkpoints, newest first; returns 1 when a site's storage could not be listed."""
    rows, errors = sync.checkpoint_rows(load_config(), args.site, args.limit)
    if rows:
        ctx.table(["site", "checkpoint", "size", "files", "residency", "run", "published"],
                  [[r["site"], r["name"], _size(r["bytes"]), r["files"], r["residency"] or "", r["run_id"] or "",
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_ts"]))] for r in rows])
    elif not errors:
        where = f"the storage of site {args.site!r}" if args.site else "any site's storage"
        ctx.print(f"no published checkpoint in {where} yet")
    for site, why in errors.items():
        print(f"checkpoints: site {site!r}: {why}", file=sys.stderr)
    return 1 if errors else 0


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"
