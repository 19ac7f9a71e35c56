"""The experiment's W&B runs on every site, as rows for the sidebar."""
from __future__ import annotations

from typing import Any

from .. import tracking
from ..tracking import sites as wandb_sites

#: W&B's cloud answers its API at api.wandb.ai and shows runs at wandb.ai
_CLOUD_APP = "https://wandb.ai"


def rows(split: Any) -> list[dict[str, Any]]:
    out = []
    for item in wandb_sites.experiment_runs(split):
        run = item.run
        out.append({
            "site": item.site, "id": run.id, "name": run.name or run.id, "job_type": run.job_type,
            "mode": "offline" if run.offline else "online", "state": run.state, "split_run": item.split_run,
            "url": None if run.offline else _run_url(split.config.sites.get(item.site), run),
            "metrics": run.metrics(),
        })
    return out


def _run_url(site: Any, run: Any) -> str | None:
    if site is None or not (run.entity and run.project):
        return None
    base = tracking.server_url(site)
    app = _CLOUD_APP if base == tracking.CLOUD_URL else base
    return f"{app}/{run.entity}/{run.project}/runs/{run.id}"
