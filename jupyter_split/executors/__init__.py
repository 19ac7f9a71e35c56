"""Executors: one module per way of starting a runner, behind `base.Executor`."""
from __future__ import annotations

import importlib

from ..config import Config, SiteConfig
from .base import Executor, ExecutorError, LaunchSpec

_MODULES = {"local": "local", "ssh": "ssh", "slurm": "slurm", "ray": "ray"}


def executor_for(site: SiteConfig, config: Config) -> Executor:
    module = importlib.import_module(f".{_MODULES[site.executor]}", __name__)
    return module.EXECUTOR(site, config)


__all__ = ["Executor", "ExecutorError", "LaunchSpec", "executor_for"]
