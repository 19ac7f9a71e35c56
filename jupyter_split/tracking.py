"""W&B on both sides: one experiment whose runs abroad and at home share a group.

The runner's environment carries the W&B context (project, group, job type, tags,
mode, server), so a plain `wandb.init()` in a cell joins the experiment. Keys
travel separately, over the runner's stdin (`runner_secrets`). Nothing here at
import time touches wandb: the core builds every runner's environment with it.
"""
from __future__ import annotations

import netrc
import os
import re
from urllib.parse import urlparse

from .config import Config, SiteConfig

#: W&B's own cloud; its data lives in the United States.
CLOUD_URL = "https://api.wandb.ai"
CLOUD_JURISDICTION = "US"


def _tag(key: str, value: str) -> str:
    # W&B tags are at most 64 characters and the env var is comma separated.
    clean = re.sub(r"[,\s]+", "_", value)
    return f"{key}:{clean}"[:64]


def site_tags(site: SiteConfig) -> list[str]:
    return [_tag("site", site.name), _tag("jurisdiction", site.jurisdiction), _tag("accelerator", site.accelerator)]


def project(config: Config, site: SiteConfig) -> str:
    return site.wandb.project or config.experiment.name


def job_type(site: SiteConfig, name: str | None) -> str:
    """The cell's `--name`, else the site's name as the phase (training abroad, tuning at home)."""
    return (name or site.name)[:64]


def runner_env(config: Config, site: SiteConfig, run_id: str, name: str | None) -> dict[str, str]:
    """The W&B context for a runner on `site`: no secrets, safe to appear in job specs."""
    env = {
        "WANDB_PROJECT": project(config, site),
        "WANDB_RUN_GROUP": config.experiment.name,
        "WANDB_JOB_TYPE": job_type(site, name),
        "WANDB_TAGS": ",".join(site_tags(site)),
        "WANDB_MODE": site.wandb.mode,
        "WANDB_NAME": run_id,
    }
    if site.wandb.base_url:
        env["WANDB_BASE_URL"] = site.wandb.base_url
    if site.wandb.entity:
        env["WANDB_ENTITY"] = site.wandb.entity
    return env


def server_url(site: SiteConfig) -> str:
    return (site.wandb.base_url or CLOUD_URL).rstrip("/")


def server_jurisdiction(site: SiteConfig) -> str:
    """Where the W&B server this site logs to keeps its data.

    `wandb.jurisdiction` when set; W&B's cloud is in the US; a self-hosted server
    (`wandb.base_url`) is taken to sit in the site's own jurisdiction.
    """
    if site.wandb.jurisdiction:
        return site.wandb.jurisdiction
    return CLOUD_JURISDICTION if site.wandb.base_url is None else site.jurisdiction


def _env_key_name(site: SiteConfig) -> str:
    return "WANDB_API_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", site.name).upper()


def api_key(site: SiteConfig) -> str | None:
    """The key for the site's W&B server: `$WANDB_API_KEY_<SITE>`, `$WANDB_API_KEY`, then ~/.netrc."""
    for var in (_env_key_name(site), "WANDB_API_KEY"):
        if os.environ.get(var):
            return os.environ[var]
    host = urlparse(server_url(site)).hostname or ""
    try:
        entry = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry else None


def runner_secrets(site: SiteConfig) -> dict[str, str]:
    """Secrets for the runner's stdin: the W&B key, only for a site that logs online."""
    if site.wandb.mode != "online":
        return {}
    key = api_key(site)
    return {"WANDB_API_KEY": key} if key else {}
