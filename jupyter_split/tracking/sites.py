"""This experiment's W&B runs on every site, and `wandb sync` of the offline ones at home.

A runner records the W&B run files each cell wrote in the run's `status.json`
(`wandb`, paths under the run directory), so the runs are found through the run
index and read through each site's executor: no network to W&B, no listing of
remote folders. Syncing stages a copy of each home run here, with what the
policy keeps from the target server removed, and hands it to `wandb sync`.
"""
from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import posixpath
import subprocess
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import aio
from . import context as tracking
from ..config import Config, SiteConfig
from ..paths import data_dir
from ..policy import ResidencyError
from ..protocol import TERMINAL_STATES
from ..runs.index import RunRecord
from .offline import WandbFileError, WandbRun, filter_records, load_run, read_records, write_records


@dataclass
class SiteRun:
    """One W&B run, where it ran, and the jupyter_split run that made it."""

    site: str
    split_run: str
    run: WandbRun
    data: bytes = field(repr=False, default=b"")

    def row(self, config: Config, *, full: bool = False) -> dict[str, Any]:
        """The run as every face shows it (the sidebar, `wandb`, `wandb --json`); `full` adds its
        config, history, tags and file."""
        run = self.run
        row = {"site": self.site, "split_run": self.split_run, "id": run.id, "name": run.name or run.id,
               "job_type": run.job_type, "mode": "offline" if run.offline else "online", "state": run.state,
               "url": None if run.offline else _run_url(config.sites.get(self.site), run),
               "metrics": run.metrics(), "artifacts": run.artifacts}
        if full:
            row.update(project=run.project, group=run.group, tags=run.tags, offline=run.offline, config=run.config,
                       history=run.history, file=str(run.path))
        return row


#: W&B's cloud answers its API at api.wandb.ai and shows runs at wandb.ai
_CLOUD_APP = "https://wandb.ai"


def _run_url(site: SiteConfig | None, run: WandbRun) -> str | None:
    if site is None or not (run.entity and run.project):
        return None
    base = tracking.server_url(site)
    app = _CLOUD_APP if base == tracking.CLOUD_URL else base
    return f"{app}/{run.entity}/{run.project}/runs/{run.id}"


async def _runs_of(split: Any, record: RunRecord, history: bool) -> list[SiteRun]:
    ex = split.executor(record.site)
    found = []
    for rel in await _wandb_files(ex, record):
        path = posixpath.join(record.run_dir, rel)
        try:
            data = await ex.read_file(path)
            found.append(SiteRun(record.site, record.run_id, load_run(path, data, history), data))
        except (FileNotFoundError, WandbFileError):
            continue  # deleted, or torn beyond its header: nothing to show
    return found


def experiment_runs(split: Any, site: str | None = None, limit: int = 200, history: bool = True) -> list[SiteRun]:
    """W&B runs of this experiment (its group) made by the last `limit` runs in the index."""
    records = _experiment_records(split, site, limit)

    async def gather() -> list[list[SiteRun]]:
        return await asyncio.gather(*(_runs_of(split, r, history) for r in records))

    runs = [run for batch in aio.run(gather()) for run in batch]
    return [r for r in runs if r.run.group == split.config.experiment.name]


#: the sidebar's rows of each W&B run file, by (site, path): the file's (size, time) and the config they
#: were made at, and the rows; a file is read again only when its size or time changed
_ROWS: OrderedDict[tuple[str, str], tuple[tuple[int, float], Any, list[dict[str, Any]]]] = OrderedDict()
#: the W&B files of each ended run, by (site, run directory): its runner wrote status.json for the last time
#: before the final record the index saw
_ENDED: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
#: how many of each the process keeps (the least recently used go first)
KEPT = 4000
_kept_lock = threading.Lock()


def experiment_rows(split: Any, limit: int = 200) -> list[dict[str, Any]]:
    """`experiment_runs(split)` as the sidebar's rows (`SiteRun.row`), for a poll every few seconds: an
    ended run's status.json is read once, and a W&B file again only when its size or time changed (one
    stat, over an ssh site's open connection), so an unchanged poll reads no run file whole."""
    records = _experiment_records(split, None, limit)

    async def gather() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(*(_rows_of(split, r) for r in records))

    return [row for rows in aio.run(gather()) for row in rows]


def _experiment_records(split: Any, site: str | None, limit: int) -> list[RunRecord]:
    prefix = split.config.experiment.name + "-"
    return [r for r in split.index.list(site, limit) if r.run_id.startswith(prefix)]


def _keep(table: OrderedDict, key: Any, value: Any) -> None:
    with _kept_lock:
        table[key] = value
        table.move_to_end(key)
        while len(table) > KEPT:
            table.popitem(last=False)


async def _wandb_files(ex: Any, record: RunRecord) -> list[str]:
    """The W&B run files the run's cells wrote (paths under its run directory, from its status.json)."""
    try:
        status = json.loads(await ex.read_file(posixpath.join(record.run_dir, "status.json")))
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return [rel for rel in status.get("wandb", []) if isinstance(rel, str)]


async def _rows_of(split: Any, record: RunRecord) -> list[dict[str, Any]]:
    ex = split.executor(record.site)
    ended = (record.site, record.run_dir)
    files = _ENDED.get(ended)
    if files is None:
        files = await _wandb_files(ex, record)
        if record.state in TERMINAL_STATES:
            _keep(_ENDED, ended, files)
    rows: list[dict[str, Any]] = []
    for rel in files:
        path = posixpath.join(record.run_dir, rel)
        info = await ex.file_info(path)
        kept = _ROWS.get((record.site, path))
        if info is not None and kept is not None and kept[0] == info and kept[1] is split.config:
            rows.extend(kept[2])
            continue
        try:
            run = load_run(path, await ex.read_file(path), True)
        except (FileNotFoundError, WandbFileError):
            continue  # deleted, or torn beyond its header: nothing to show
        made = [SiteRun(record.site, record.run_id, run).row(split.config)] \
            if run.group == split.config.experiment.name else []
        if info is not None:
            _keep(_ROWS, (record.site, path), (info, split.config, made))
        rows.extend(made)
    return rows


# -- sync -------------------------------------------------------------------------------

@dataclass
class SyncPlan:
    """What syncing one home run to `target`'s W&B server sends and keeps back."""

    item: SiteRun
    target: SiteConfig
    staged: Path
    refused: dict[str, str] = field(default_factory=dict)  # artifact name -> the guard's refusal
    metric_filter: list[str] | None = None                 # allowlist applied, when going abroad

    @property
    def finished(self) -> bool:
        """Whether the run file records an exit; a run with none is not synced."""
        return self.item.run.exit_code is not None

    @property
    def synced(self) -> bool:
        """Whether this staged copy was already sent (its `.synced` marker is there)."""
        return self.staged.with_name(self.staged.name + ".synced").exists()


def staging_dir() -> Path:
    """Where filtered copies of home runs wait for `wandb sync`, one folder per target site."""
    return data_dir() / "wandb-sync"


def plan_sync(config: Config, runs: list[SiteRun], target: SiteConfig) -> list[SyncPlan]:
    """Offline runs made at home, each with what the policy keeps from `target`'s server."""
    home = config.home.jurisdiction
    abroad = tracking.server_jurisdiction(target) != home
    allow = config.policy.metrics_abroad if abroad else None
    plans = []
    for item in runs:
        site = config.sites.get(item.site)
        if site is None or site.jurisdiction != home or not item.run.offline:
            continue
        folder = item.run.path.parent.name
        staged = staging_dir() / target.name / item.site / folder / item.run.path.name
        plans.append(SyncPlan(item, target, staged, metric_filter=allow))
    return plans


def check_artifacts(plan: SyncPlan, config: Config) -> None:
    """Ask the residency guard about each artifact (it audits those that cross a border);
    refused ones stay out of the copy."""
    for artifact in plan.item.run.artifacts:
        labels = set(artifact["metadata"].get("labels") or [])
        try:
            tracking.guard_artifact(artifact["metadata"].get("url", artifact["name"]), plan.target, labels,
                                    artifact["metadata"].get("bytes", 0), config)
        except ResidencyError as exc:
            plan.refused[artifact["name"]] = str(exc)


def check_content(plan: SyncPlan, config: Config) -> None:
    """The border's content scan of the staged run file, when the target's server is abroad:
    a `ResidencyError` (audited) if it holds personal information, e.g. a logged table's rows."""
    from ..policy import check_content as scan

    scan(f"W&B run {plan.item.site}/{plan.item.run.id}", lambda: open(plan.staged, "rb"), kind="wandb-run",
         to_site=plan.target, to_jurisdiction=tracking.server_jurisdiction(plan.target),
         dest=tracking.server_url(plan.target), nbytes=plan.staged.stat().st_size, config=config)


def stage(plan: SyncPlan) -> Path:
    """Write the run file to send, filtered as the plan says, beside nothing else."""
    plan.staged.parent.mkdir(parents=True, exist_ok=True)
    plan.staged.with_name(plan.staged.name + ".synced").unlink(missing_ok=True)  # a new copy is unsent
    allow = plan.metric_filter

    def keep(key: str) -> bool:
        return allow is None or any(fnmatch.fnmatchcase(key, pattern) for pattern in allow)

    records = read_records(plan.item.run.path, plan.item.data)
    write_records(plan.staged, filter_records(records, keep, plan.refused, drop_output=allow is not None))
    return plan.staged


def run_sync(plan: SyncPlan, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """`wandb sync` of the staged copy to the target's server; the key goes in the environment only."""
    argv = [sys.executable, "-m", "wandb", "sync", str(plan.staged.parent)]
    if plan.target.wandb.entity:
        argv[4:4] = ["--entity", plan.target.wandb.entity]
    try:
        return subprocess.run(argv, env=_server_env(plan.target), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"wandb sync did not finish within {timeout:g} s")


def _server_env(target: SiteConfig) -> dict[str, str]:
    env = {**os.environ, "WANDB_BASE_URL": tracking.server_url(target), "WANDB_MODE": "online"}
    env.pop("WANDB_API_KEY", None)
    key = tracking.api_key(target)
    if key:
        env["WANDB_API_KEY"] = key
    return env


# Runs in a child process so the notebook's own wandb.run is left alone.
_USE_SCRIPT = r"""
import json, sys
import wandb
job = json.loads(sys.stdin.readline())
run = wandb.init(id=job["id"], project=job["project"], entity=job["entity"] or None, resume="allow",
                 settings=wandb.Settings(console="off", save_code=False, x_disable_stats=True, x_disable_meta=True))
for name in job["uses"]:
    try:
        run.use_artifact(name)
        print("recorded the use of", name)
    except Exception as exc:
        print("could not record the use of", name, "on this server:", exc)
run.finish()
"""


def complete_uses(plan: SyncPlan, timeout: float = 300.0) -> list[str]:
    """After a sync: record on the server the checkpoints the run used offline (W&B cannot offline)."""
    used = plan.item.run.config.get(tracking.USED_KEY) or []
    if not used:
        return []
    uses = [f"{u['artifact']}:sha-{u['sha256'][:16]}" for u in used]
    job = {"id": plan.item.run.id, "project": plan.item.run.project,
           "entity": plan.target.wandb.entity or plan.item.run.entity, "uses": uses}
    env = _server_env(plan.target)
    try:
        done = subprocess.run([sys.executable, "-c", _USE_SCRIPT], input=json.dumps(job) + "\n", env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [f"could not record the checkpoints it used: the server did not answer within {timeout:g} s"]
    lines = [line for line in done.stdout.splitlines() if line.startswith(("recorded", "could not"))]
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"status {done.returncode}"])[-1]
        lines.append(f"could not resume the run to record the checkpoints it used: {last}")
    return lines
