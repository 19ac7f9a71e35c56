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

from .probe import parse, script

if TYPE_CHECKING:
    from ..executors.base import Executor
    from ..runs.index import RunRecord

#: sinfo, one line per node: name, state, CPUs, memory (MB), generic resources, CPUs alloc/idle/other/total
SINFO = ["sinfo", "-N", "-h", "-o", "%N|%T|%c|%m|%G|%C"]
#: squeue, one line per job: id, name, state, nodes, cards per node asked (tres-per-node), elapsed, node count
SQUEUE_FORMAT = "%i|%j|%T|%N|%b|%M|%D"
#: what a job step sees of its cards: the indices Slurm bound to it (its GRES), else the CUDA ones
STEP_VISIBLE = 'echo @@visible; echo "${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES-}}}"'
#: the node's name as Slurm knows it (sinfo, squeue), which may differ from its host name
STEP_NODE = 'echo @@slurm_node; echo "${SLURMD_NODENAME-}"'


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
            if len(cells) == 7:
                answer["jobs"].append({"job_id": cells[0], "name": cells[1], "state": cells[2], "nodes": cells[3],
                                       "cards": cells[4], "elapsed": cells[5], "run": jobs.get(cells[0]),
                                       "node_count": int(cells[6]) if cells[6].isdigit() else 1})
        if code != 0 and "Invalid job id" not in err:  # jobs that ended meanwhile are no error
            answer["errors"].append(f"squeue failed: {err.strip()[-300:]}")
    return answer


def step_argv(job: str, nodes: int, script: str) -> list[str]:
    """The probe as a step of a running job, one task on each of its `nodes`: `--overlap` shares the
    job's cores (it asks none of its own, so it starts at once and never waits behind the job), and
    each line comes labelled with its task."""
    return ["srun", f"--jobid={job}", "--overlap", f"--nodes={nodes}", "--ntasks-per-node=1", "--label",
            "--quiet", "--job-name=jupyter-split-probe", "sh", "-c", script]


def by_task(text: str) -> dict[int, str]:
    """srun --label's output as each task's own lines."""
    tasks: dict[int, list[str]] = {}
    for line in text.splitlines():
        label, sep, rest = line.partition(": ")
        if sep and label.strip().isdigit():
            tasks.setdefault(int(label), []).append(rest)
    return {task: "\n".join(lines) for task, lines in tasks.items()}


async def job_nodes(ex: "Executor", jobs: list[dict[str, Any]], timeout: float) -> tuple[list[dict[str, Any]], list[str]]:
    """The compute nodes of this experiment's running jobs, each read by the probe inside its job (the
    cards a job step sees are the cards of the node as Slurm gives them to the job); the cards the
    job's step is bound to are held by the job's run. Returns (nodes, errors)."""
    nodes: list[dict[str, Any]] = []
    errors: list[str] = []
    for job in jobs:
        if job["state"] != "RUNNING" or not job["run"]:
            continue
        argv = step_argv(job["job_id"], job["node_count"], "\n".join([STEP_NODE, STEP_VISIBLE, script()]))
        try:
            code, out, err = await asyncio.wait_for(ex.command(argv), timeout)  # type: ignore[attr-defined]
        except asyncio.TimeoutError:
            errors.append(f"job {job['job_id']}: its nodes did not answer the probe within {timeout:.0f} s")
            continue
        tasks = by_task(out)
        if code != 0 and not tasks:
            errors.append(f"job {job['job_id']}: srun failed (exit {code}): {err.strip()[-300:]}")
        for _, text in sorted(tasks.items()):
            node = parse(text)
            held = {part.strip() for part in node.pop("visible", "").split(",") if part.strip()}
            node.pop("sessions", None)
            for card in node["cards"]:
                if str(card.index) in held:
                    card.run = job["run"]
            node.update(role="compute", job=job["job_id"], run=job["run"], host=node["node"],
                        node=node.pop("slurm_node", None) or node["node"],
                        cards=[card.to_dict() for card in node["cards"]])
            nodes.append(node)
    return nodes, errors


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
