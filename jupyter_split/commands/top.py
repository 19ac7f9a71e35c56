"""`top`: every site's accelerators, live: per node, each card's use, memory, temperature, power, run."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..accelerators.poll import poller
from ..core.split import get_split
from . import Context, arg, verb


@verb("top", "every site's accelerators now: per node, each card's use, memory, temperature, power and run",
      arg("site", nargs="?", help="one site (default: every site)"),
      arg("--json", action="store_true", help="the readings as JSON"))
def top(ctx: Context, args: argparse.Namespace) -> int:
    """Print the readings of every site (or one) as a table; returns 1 where a site could not be read."""
    readings = poller(get_split()).readings(args.site)
    if args.json:
        ctx.print(json.dumps(readings, indent=2, default=str))
    else:
        ctx.table(["site", "node", "#", "device", "use", "memory", "temp", "power", "run"], rows(readings))
        for line in notes(readings):
            ctx.print(line)
    return 1 if any(site["errors"] for site in readings["sites"]) else 0


def rows(readings: dict[str, Any]) -> list[list[str]]:
    """The table's rows: per site and node, the host's CPU and memory, then one row per card."""
    table: list[list[str]] = []
    for site in readings["sites"]:
        if not site["nodes"]:
            table.append([site["site"], "-", "-", "not read", "-", "-", "-", "-", "-"])
        for node in site["nodes"]:
            cpu, mem = node.get("cpu") or {}, node.get("memory") or {}
            name = _node(node)
            table.append([site["site"], name, "-", f"cpu ({cpu.get('count') or '?'} cores)",
                          _pct(cpu.get("percent")), _mem(mem.get("used"), mem.get("total"), None), "-", "-", "-"])
            for card in node["cards"]:
                table.append([site["site"], name, str(card["index"]), card["model"],
                              _pct(card["utilisation"]),
                              _mem(card["memory_used"], card["memory_total"], card["memory_percent"]),
                              _unit(card["temperature"], "C"), _unit(card["power"], " W"), card["run"] or "-"])
            if not node["cards"]:
                table.append([site["site"], name, "-", "no accelerator tool found", "-", "-", "-", "-", "-"])
    return table


def notes(readings: dict[str, Any]) -> list[str]:
    """What goes under the table: Slurm's nodes and this experiment's jobs, Ray's resources, errors."""
    lines: list[str] = []
    for site in readings["sites"]:
        name = site["site"]
        slurm = site.get("slurm")
        if slurm:
            for node in slurm["nodes"]:
                lines.append(f"{name}: slurm node {node['node']} {node['state']}, cpus {node['cpus_allocated']}/"
                             f"{node['cpus_total']} allocated, gres {node['gres']}")
            for job in slurm["jobs"]:
                lines.append(f"{name}: job {job['job_id']} {job['state']} on {job['nodes'] or '(pending)'}, "
                             f"cards {job['cards']}, {job['elapsed']}, run {job['run']}")
            lines += [f"{name}: {error}" for error in slurm["errors"]]
        ray = site.get("ray")
        if ray:
            for resource, value in sorted(ray["resources"].items()):
                used = "?" if value["used"] is None else f"{value['used']:g}"
                lines.append(f"{name}: ray {resource} {used}/{value['total']:g} in use")
            lines += [f"{name}: {error}" for error in ray["errors"]]
        for node in site["nodes"]:
            lines += [f"{name}: {error}" for error in node["errors"]]
        lines += [f"{name}: {error}" for error in site["errors"]]
    if lines:
        lines.insert(0, "")
    return lines


def _node(node: dict[str, Any]) -> str:
    """A node's name, and on a Slurm site its part: the login node, or the compute node of a job."""
    name = node.get("node") or "?"
    if node.get("role") == "login":
        return f"{name} (login)"
    return f"{name} (job {node['job']})" if node.get("role") == "compute" else name


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:g}%"


def _unit(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:g}{unit}"


def _mem(used: float | None, total: float | None, percent: float | None) -> str:
    """MiB as GiB, `used/total GiB`; a percentage where the tool gives only that."""
    if used is not None and total:
        return f"{used / 1024:.1f}/{total / 1024:.1f} GiB"
    return "-" if percent is None else f"{percent:g}%"
