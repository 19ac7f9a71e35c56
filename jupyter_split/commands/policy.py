"""Verbs about data residency: policy, declassify, audit."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import fsspec

from .. import policy
from ..config import SiteConfig, load_config
from ..residency.audit import DECISIONS
from ..residency.labels import label_origins, variable_origins
from ..residency.locations import is_local
from ..residency.taint import describe_state
from ..sync.manifest import MANIFEST_NAME, ManifestError, read_manifest
from . import Context, arg, verb


_IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


def _fail(message: str) -> int:
    print(f"jupyter-split: {message}", file=sys.stderr)
    return 2


@verb("policy", "show the residency policy, what is labelled, and the labels of LOCATIONs",
      arg("locations", nargs="*", metavar="LOCATION", help="paths or URLs to check against policy.resident"))
def show_policy(ctx: Context, args: argparse.Namespace) -> int:
    """Print the residency policy, what is labelled (checkpoints, variables, LOCATIONs) and the audit log's size."""
    config = load_config()
    home = config.home
    ctx.print(f"config: {config.source}")
    ctx.print(f"home: site {home.name!r}, jurisdiction {home.jurisdiction}: data labelled {home.jurisdiction} stays there")
    ctx.table(["site", "jurisdiction", "storage"],
           [[s.name, s.jurisdiction, s.storage or ""] for s in config.sites.values()])
    ctx.print("resident (labelled " + home.jurisdiction + "): " + (", ".join(config.policy.resident) or "(none)"))
    ctx.print("allow_export: " + (", ".join(config.policy.allow_export) or "(none)"))
    ctx.print(f"audit log: {config.audit_log_path()} ({len(policy.audit_entries(config=config))} records)")
    approved = policy.declassifications(config)
    ctx.print(f"declassified: {len(approved) or '(none)'}")
    for record in approved:
        ctx.print(f"  {record.get('item')}: by {record.get('user')} at {record.get('time')}: {record.get('reason')}")
    for site in config.sites.values():
        for root, labels in _labelled_checkpoints(site):
            ctx.print(f"labelled checkpoint on {site.name}: {root}: {', '.join(labels)}")
    state = describe_state()
    if state["tracking"]:
        labels = state["labels"]
        who = "this kernel" if state.get("process") == "kernel" else "this run"
        ctx.print(f"{who}: " + ("; ".join(f"{k} ({v})" for k, v in labels.items()) or "not labelled"))
        if labels and who == "this kernel":
            ctx.print("  every --in variable to another jurisdiction is refused until the kernel restarts, "
                      "or the variable is declassified (%split declassify NAME --reason \"...\")")
    if ctx.namespace is not None:
        labelled = {name: variable_origins(name, value) for name, value in list(ctx.namespace.items())
                    if not name.startswith("_") and name not in _IPYTHON_NAMES and _labelled_here(value)}
        labelled = {name: found for name, found in labelled.items() if found}
        ctx.print(f"labelled variables: {len(labelled) or '(none)'}")
        for name, found in sorted(labelled.items()):
            ctx.print(f"  {name}: " + "; ".join(f"{k} from {v}" for k, v in sorted(found.items())))
    for location in args.locations:
        found = policy.url_label_origins(location, config)
        ctx.print(f"{location}: " + ("; ".join(f"{k} ({v})" for k, v in found.items()) or "not labelled"))
    return 0


def _labelled_checkpoints(site: SiteConfig, depth: int = 4) -> list[tuple[str, list[str]]]:
    """Published checkpoints with labels in a site's storage, when it is on this machine."""
    if not site.storage or not is_local(site.storage):
        return []  # listing a remote store could hang on a site that is down: ask by LOCATION instead
    fs = fsspec.filesystem("file")
    top = fs._strip_protocol(site.storage)
    found = []
    for folder, subfolders, files in os.walk(top):
        if folder[len(top):].count(os.sep) >= depth:
            subfolders.clear()
        if MANIFEST_NAME in files:
            try:
                manifest = read_manifest(fs, folder)
            except ManifestError:
                continue
            if manifest and manifest.labels:
                found.append((folder, list(manifest.labels)))
    return found


def _labelled_here(value: Any) -> bool:
    # Modules, classes and IPython's own helpers are not data; only look inside data.
    return not callable(value) or bool(label_origins(value))


@verb("declassify", "approve the export of labelled ITEMs (paths, URLs, checkpoint or variable names), audited",
      arg("items", nargs="+", metavar="ITEM"),
      arg("--reason", required=True, help="who approved the export, and the approval's reference"),
      arg("--user", help="who declassifies (default: the login name)"))
def declassify(ctx: Context, args: argparse.Namespace) -> int:
    """Declassify each ITEM, audited. A variable is marked by its object where it takes a mark,
    else by its name. Returns 2 at the first item refused; the items before it stay declassified."""
    config = load_config()
    for item in args.items:
        variable = ctx.namespace is not None and item in ctx.namespace
        target = ctx.namespace[item] if variable else item
        if variable and not _takes_mark(target):
            # a str, number or tuple takes no mark (and a string would be read as a location,
            # its value written to the register): the variable is declassified by its name
            target = item
        try:
            record = policy.declassify(target, args.reason, args.user, name=item, config=config)
        except (TypeError, ValueError) as exc:
            return _fail(f"cannot declassify {item!r}: {exc}")
        what = "variable" if variable else "item"
        ctx.print(f"declassified {what} {item!r} ({', '.join(record['labels']) or 'no label now'}) "
                  f"by {record['user']}: {record['reason']}")
    return 0


def _takes_mark(value: Any) -> bool:
    """Whether `mark_declassified` can mark this very object."""
    return not isinstance(value, (str, bytes, int, float, complex, tuple, frozenset, range, type(None)))


@verb("audit", "show the audit log of cross-border transfers, filtered",
      arg("--decision", choices=DECISIONS), arg("--site", help="either end of the transfer"),
      arg("--since", metavar="DATE", help="UTC date or time, e.g. 2026-11-28 or 2026-11-28T09:00"),
      arg("--json", action="store_true", help="one JSON record a line"))
def show_audit(ctx: Context, args: argparse.Namespace) -> int:
    """Print the audit log's records, filtered; returns 2 for a filter it cannot read (a bad --since)."""
    try:
        records = policy.audit_entries(args.decision, args.site, args.since)
    except ValueError as exc:
        return _fail(str(exc))
    if args.json:
        for record in records:
            ctx.print(json.dumps(record, sort_keys=True))
        return 0
    rows = [[r.get("time", ""), r.get("decision", ""), r.get("kind", ""), r.get("item", ""),
             f"{r.get('from_site') or '?'}({r.get('from_jurisdiction') or '?'}) -> "
             f"{r.get('to_site') or '?'}({r.get('to_jurisdiction') or '?'})" if r.get("kind") != "declassify" else "",
             "" if r.get("bytes") is None else r["bytes"], r.get("user", ""), str(r.get("reason", ""))[:80]]
            for r in records]
    ctx.table(["time", "decision", "kind", "item", "from -> to", "bytes", "user", "reason"], rows)
    return 0
