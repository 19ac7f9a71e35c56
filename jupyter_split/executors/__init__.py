"""Executors: one module per way of starting a runner, behind `base.Executor`."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import Executor, ExecutorError, LaunchSpec

if TYPE_CHECKING:  # the config's models take most of a short command's start-up: not imported to read a log
    from ..config import Config, SiteConfig

_MODULES = {"local": "local", "ssh": "ssh", "slurm": "slurm", "ray": "ray"}


def executor_for(site: SiteConfig, config: Config) -> Executor:
    """A new executor for `site`, of the kind its `executor` setting names (local, ssh, slurm, ray).

    Callers keep it: `Split.executor` makes one per site and process. Raises ExecutorError where the
    site's settings cannot work for that kind (an ssh site's `workdir` must be absolute).
    """
    module = importlib.import_module(f".{_MODULES[site.executor]}", __name__)
    return module.EXECUTOR(site, config)


__all__ = ["Executor", "ExecutorError", "LaunchSpec", "executor_for"]
