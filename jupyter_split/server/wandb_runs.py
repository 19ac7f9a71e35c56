"""The experiment's W&B runs on every site, as rows for the sidebar (`SiteRun.row`)."""
from __future__ import annotations

from typing import Any

from ..tracking import sites as wandb_sites


def rows(split: Any) -> list[dict[str, Any]]:
    """Every W&B run of this experiment, on every site, as the sidebar shows it (a W&B file read again only
    when it changed: `tracking.sites.experiment_rows`)."""
    return wandb_sites.experiment_rows(split)
