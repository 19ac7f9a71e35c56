"""`doctor`: can this notebook's cells run on a site? A short verdict table, then what to do."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .. import transfer
from ..core.outcome import CellOptions
from ..core.split import get_split
from ..errors import user_message
from . import Context, arg, verb

#: run on the site by a runner of its own (not the session): what the cells would find there
PROBE_CELL = """\
def _split_doctor():
    import json
    from importlib import metadata
    from jupyter_split.accelerators.devices import describe, detect
    try:
        numpy = metadata.version("numpy")
    except metadata.PackageNotFoundError:
        numpy = None
    info = detect({accelerator!r})
    print(json.dumps({{"devices": describe(info), "count": info.count, "note": info.note, "numpy": numpy}}))
_split_doctor()
"""

#: what the notebook and the site must share to ship variables, and what else is worth seeing
VERSIONS = ("python", "cloudpickle", "torch", "jupyter_split", "numpy")


@verb("doctor", "check a site: its python, versions, accelerator and devices, and parity with here",
      arg("site", nargs="?", help="the site to check (default: experiment.default_remote)"),
      arg("--json", action="store_true", help="the full report as JSON"))
def doctor(ctx: Context, args: argparse.Namespace) -> int:
    """Check a site against here (versions, accelerator, install); returns 1 when something needs a fix."""
    split = get_split()
    report = split.doctor(args.site)
    site = split.config.site(report["site"])
    report["devices"] = _probe_devices(site.name, site.accelerator)
    report["local"].setdefault("numpy", _version("numpy"))
    report["remote"].setdefault("numpy", report["devices"].get("numpy"))
    rows, fixes = verdicts(report, site.accelerator)
    if args.json:
        ctx.print(json.dumps(report, indent=2))
    else:
        ctx.print(f"site {report['site']!r}: {report['executor']} executor, python {report['python']}")
        ctx.table(["check", "here", report["site"], "verdict"], rows)
        ctx.print("\n".join(["", "what to do:", *(f"  - {fix}" for fix in fixes)]) if fixes else
                  f"\nall well: cells run on {report['site']!r} and --in/--out variables can go both ways.")
    return 1 if fixes else 0


def verdicts(report: dict[str, Any], accelerator: str) -> tuple[list[list[str]], list[str]]:
    """The table's rows (check, here, there, verdict) and the fixes for what is wrong."""
    local, remote, site = report["local"], report["remote"], report["site"]
    rows, fixes = [], []
    for key in VERSIONS:
        here, there = local.get(key), remote.get(key)
        fix = _version_fix(key, local, remote, site)
        rows.append([key, here or "-", there or "missing", "ok" if fix is None else "fix"])
        if fix:
            fixes.append(fix)
    devices = report["devices"]
    problem = devices.get("error") or devices.get("note")
    rows.append(["accelerator", "-", f"{accelerator}: {devices.get('devices') or 'not probed'}",
                 "ok" if not problem else "fix"])
    if problem:
        fixes.append(problem)
    install = report.get("install")
    if install and install.get("status") != "ok":
        rows.append(["install", "-", install.get("status", "?"), "fix"])
        fixes.append(f"jupyter_split on {site!r}: {install.get('status')}")
    return rows, fixes


def _version_fix(key: str, local: dict[str, Any], remote: dict[str, Any], site: str) -> str | None:
    if key in ("python", "cloudpickle", "torch"):
        try:  # the parity the cells' --in/--out need, checked for this one package
            transfer.check_parity(local, {**local, key: remote.get(key)}, site)
        except transfer.VersionMismatch as exc:
            return str(exc)
        return None
    if key == "jupyter_split" and local.get(key) != remote.get(key):
        return (f"jupyter_split {remote.get(key) or 'is missing'} on {site!r}, {local.get(key)} here: "
                f"install the same version there (an ssh site's `%split doctor` installs it)")
    if key == "numpy" and remote.get("torch") and not remote.get("numpy"):
        # torch without numpy warns "Failed to initialize NumPy" at every import, on every rank
        return f"numpy is missing on {site!r} next to torch: install it there (`pip install numpy`)"
    return None


def _probe_devices(site: str, accelerator: str) -> dict[str, Any]:
    """What a runner on the site finds: its devices (the site's `accelerator`) and numpy."""
    events: list[dict[str, Any]] = []
    try:
        outcome = get_split().execute(PROBE_CELL.format(accelerator=accelerator),
                                      CellOptions(site=site, fresh=True, name="doctor"), None, events.append)
    except Exception as exc:  # noqa: BLE001 - a site that cannot run a cell is the finding itself
        message = user_message(exc)
        if message is None:
            raise
        return {"error": f"no runner on {site!r}: {message}"}
    out = "".join(e["text"] for e in events if e["type"] == "stream" and e["name"] == "stdout").strip()
    if not outcome.ok or not out:
        error = (outcome.error or {}).get("evalue") or outcome.reason or outcome.state
        return {"error": f"a cell could not run on {site!r}: {error}"}
    return json.loads(out.splitlines()[-1])


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
