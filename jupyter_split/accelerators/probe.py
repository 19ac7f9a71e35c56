"""One reading of a site: its host's CPU and memory and every card its vendors' tools report.

The probe is one POSIX shell script run through the site's executor: on an ssh site (and the
login node of a Slurm or Ray site) over the site's existing connection (`SiteConnection.run`,
no new login), on a local site as a subprocess here. It runs whichever tools exist there
(`command -v`), and lists this user's processes with their session ids, so a card's processes
lead to the run whose runner leads that session (every runner starts a session of its own).
"""
from __future__ import annotations

import asyncio
import os
import shlex
import time
from typing import TYPE_CHECKING, Any

from .base import tools

if TYPE_CHECKING:
    from ..executors.base import Executor
    from ..runs.index import RunRecord

#: seconds the whole probe may take on a site before its reading says so
PROBE_TIMEOUT = 30.0
#: two samples of /proc/stat this far apart give the CPU's utilisation
CPU_SAMPLE = 0.2
#: where the rocm-smi concise table would only repeat hy-smi's on a Hygon machine
_UNLESS = {"rocm-smi": "hy-smi"}


def script() -> str:
    """The probe: host, CPU samples, memory, each present tool's output, this user's processes."""
    lines = ["echo @@host; uname -n",
             f"echo @@stat; head -n1 /proc/stat 2>/dev/null; sleep {CPU_SAMPLE}; head -n1 /proc/stat 2>/dev/null",
             "echo @@ncpu; getconf _NPROCESSORS_ONLN 2>/dev/null",
             "echo @@meminfo; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo 2>/dev/null"]
    for name, spec in tools().items():
        test = f"command -v {shlex.quote(name)} >/dev/null 2>&1"
        if name in _UNLESS:
            test += f" && ! command -v {shlex.quote(_UNLESS[name])} >/dev/null 2>&1"
        lines.append(f"if {test}; then echo '@@tool {name}'; ( {spec.command} ) 2>&1; echo \"@@exit $?\"; fi")
    lines.append('echo @@sessions; ps -u "$(id -u)" -o pid=,sid= 2>/dev/null')
    return "\n".join(lines) + "\n"


async def run_script(ex: "Executor", text: str, timeout: float = PROBE_TIMEOUT) -> tuple[int, str, str]:
    """Run a shell script where `ex` runs things: over its SSH connection, or here.

    A cluster executor's commands run on its `host` (the login node, or this machine).
    """
    host = getattr(ex, "host", ex)
    env = host.site.env
    if host.kind == "ssh":
        done = await host.connection.run(["sh", "-c", text], timeout=timeout, env=env or None)
        return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    proc = await asyncio.create_subprocess_exec("sh", "-c", text, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def sections(text: str) -> list[tuple[str, str]]:
    """The probe's output as (marker, body) pairs, in order."""
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("@@"):
            found.append((line[2:].strip(), []))
        elif found:
            found[-1][1].append(line)
    return [(marker, "\n".join(body)) for marker, body in found]


def parse(text: str) -> dict[str, Any]:
    """A node's reading from the probe's output: host, cpu, memory, cards, tools and their errors."""
    node: dict[str, Any] = {"node": None, "cpu": {}, "memory": {}, "cards": [], "tools": [], "errors": [],
                            "sessions": {}}
    tool_name: str | None = None
    for marker, body in sections(text):
        if marker == "host":
            node["node"] = body.strip() or None
        elif marker == "stat":
            node["cpu"]["percent"] = _cpu_percent(body)
        elif marker == "ncpu":
            node["cpu"]["count"] = int(body.strip()) if body.strip().isdigit() else None
        elif marker == "meminfo":
            node["memory"] = _memory(body)
        elif marker.startswith("tool "):
            tool_name = marker[5:]
            node["tools"].append(tool_name)
            node.setdefault("_outputs", {})[tool_name] = body
        elif marker.startswith("exit ") and tool_name:
            body_text = node["_outputs"].pop(tool_name)
            cards = tools()[tool_name].parse(body_text)
            for card in cards:
                card.tool = tool_name
            if marker != "exit 0" and not cards:
                last = body_text.strip().splitlines()[-1:] or ["no output"]
                node["errors"].append(f"{tool_name} failed ({marker[5:]}): {last[0][:300]}")
            node["cards"].extend(cards)
            tool_name = None
        elif marker in ("visible", "slurm_node"):  # a Slurm job step's cards and node (cluster.job_nodes)
            node[marker] = body.strip()
        elif marker == "sessions":
            for line in body.splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                    node["sessions"][int(parts[0])] = int(parts[1])
    node.pop("_outputs", None)
    return node


def _cpu_percent(body: str) -> float | None:
    samples = [[int(v) for v in line.split()[1:]] for line in body.splitlines() if line.startswith("cpu ")]
    if len(samples) < 2:
        return None
    # fields: user nice system idle iowait irq softirq steal ...; idle time is idle + iowait
    deltas = [b - a for a, b in zip(samples[0], samples[1])]
    total = sum(deltas[:8])
    idle = deltas[3] + (deltas[4] if len(deltas) > 4 else 0)
    return round(100 * (total - idle) / total, 1) if total > 0 else None


def _memory(body: str) -> dict[str, float]:
    values = {line.split(":")[0]: int(line.split()[1]) for line in body.splitlines() if ":" in line}
    if "MemTotal" not in values:
        return {}
    total = values["MemTotal"] / 1024
    return {"total": round(total), "used": round(total - values.get("MemAvailable", values["MemTotal"]) / 1024)}


def assign_runs(node: dict[str, Any], records: list["RunRecord"], visible: str | None) -> None:
    """Name the run holding each card: by the card's processes (their session leads to a runner); for
    a tool that lists no processes, where the site sets `visible_devices`, the newest running run
    holds those cards."""
    leaders = {r.handle.get("pid"): r.run_id for r in sorted(records, key=lambda r: r.created)
               if r.handle.get("pid") and (r.state == "running" or r.mode != "session")}
    sessions = node.pop("sessions", {})
    running = [r for r in records if r.state == "running"]
    held = {part.strip() for part in (visible or "").split(",") if part.strip()}
    for card in node["cards"]:
        for pid in card.pids:
            run = leaders.get(sessions.get(pid, pid)) or leaders.get(pid)
            if run:
                card.run = run
                break
        if card.run is None and running and not tools()[card.tool].processes and str(card.index) in held:
            card.run = max(running, key=lambda r: r.created).run_id


async def read_host(ex: "Executor", records: list["RunRecord"]) -> dict[str, Any]:
    """One node's reading (the site's machine, or a cluster's login node) with its cards' runs."""
    started = time.time()
    code, out, err = await run_script(ex, script())
    node = parse(out)
    if code != 0 and not node["node"]:
        node["errors"].append(f"the probe failed (exit {code}): {err.strip()[-300:]}")
    assign_runs(node, records, ex.site.visible_devices)
    node["cards"] = [card.to_dict() for card in node["cards"]]
    node["seconds"] = round(time.time() - started, 2)
    return node

