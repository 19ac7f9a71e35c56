"""What a cluster site adds to its reading: Slurm's nodes and this experiment's jobs, Ray's resources.

Slurm's commands run where the executor runs them (here, or the login node over the site's
connection); Ray's come from its dashboard's HTTP API at the site's `ray.address`, the same
server the Jobs API uses, so no driver connects to the cluster.
"""
from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..executors.base import Executor
    from ..runs.index import RunRecord

#: sinfo, one line per node: name, state, CPUs, memory (MB), generic resources, CPUs alloc/idle/other/total
SINFO = ["sinfo", "-N", "-h", "-o", "%N|%T|%c|%m|%G|%C"]
#: squeue, one line per job: id, name, state, nodes, cards per node asked (tres-per-node), elapsed
SQUEUE_FORMAT = "%i|%j|%T|%N|%b|%M"


async def slurm(ex: "Executor", records: list["RunRecord"]) -> dict[str, Any]:
    """Slurm's nodes (sinfo) and the jobs of this experiment's runs on the site (squeue)."""
    code, out, err = await ex.command(SINFO)  # type: ignore[attr-defined]
    answer: dict[str, Any] = {"nodes": [], "jobs": [], "errors": []}
    if code != 0:
        answer["errors"].append(f"sinfo failed: {err.strip()[-300:]}")
    for line in out.splitlines():
        cells = line.split("|")
        if len(cells) == 6:
            alloc, idle, other, total = (cells[5].split("/") + ["", "", "", ""])[:4]
            answer["nodes"].append({"node": cells[0], "state": cells[1], "cpus": cells[2], "memory_mb": cells[3],
                                    "gres": cells[4], "cpus_allocated": alloc, "cpus_total": total})
    jobs = {r.handle["job_id"]: r.run_id for r in records if r.handle.get("job_id")}
    if jobs:
        code, out, err = await ex.command(["squeue", "-h", "-j", ",".join(jobs), "-o", SQUEUE_FORMAT])  # type: ignore[attr-defined]
        for line in out.splitlines():
            cells = line.split("|")
            if len(cells) == 6:
                answer["jobs"].append({"job_id": cells[0], "name": cells[1], "state": cells[2], "nodes": cells[3],
                                       "cards": cells[4], "elapsed": cells[5], "run": jobs.get(cells[0])})
        if code != 0 and "Invalid job id" not in err:  # jobs that ended meanwhile are no error
            answer["errors"].append(f"squeue failed: {err.strip()[-300:]}")
    return answer


def _card_or_cpu(name: str) -> bool:
    """Whether a Ray resource is one a person counts (CPU, GPU, NPU, custom ones), not a node's own
    marker or a memory pool in bytes."""
    return not name.startswith("node:") and "memory" not in name.lower()


def _get(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the site's own dashboard URL
        return json.loads(response.read())


async def ray(ex: "Executor", timeout: float = 10.0) -> dict[str, Any]:
    """Ray's nodes and resources (total, and used where the autoscaler reports usage)."""
    address = ex.site.ray.address.rstrip("/")
    answer: dict[str, Any] = {"nodes": [], "resources": {}, "errors": []}
    try:
        nodes = await asyncio.to_thread(_get, f"{address}/api/v0/nodes?detail=1&limit=1000", timeout)
        for row in (nodes.get("data", {}).get("result", {}).get("result") or []):
            answer["nodes"].append({"node": row.get("node_name") or row.get("node_ip"), "state": row.get("state"),
                                    "resources_total": row.get("resources_total", {})})
        status = await asyncio.to_thread(_get, f"{address}/api/cluster_status", timeout)
        usage = (((status.get("data") or {}).get("clusterStatus") or {}).get("loadMetricsReport") or {}).get("usage") or {}
        answer["resources"] = {name: {"used": pair[0], "total": pair[1]} for name, pair in usage.items()
                               if isinstance(pair, list) and len(pair) == 2 and _card_or_cpu(name)}
    except (OSError, ValueError) as exc:
        answer["errors"].append(f"Ray's dashboard at {address} did not answer: {exc}")
    if not answer["resources"]:  # no autoscaler report: the nodes' totals, use unknown
        for node in answer["nodes"]:
            for name, total in node["resources_total"].items():
                if _card_or_cpu(name):
                    answer["resources"].setdefault(name, {"used": None, "total": 0})["total"] += total
    return answer
