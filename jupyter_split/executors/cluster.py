"""The shared part of executors that submit jobs to a scheduler (Slurm, Ray).

Their run directories and commands live where the scheduler is reached from: this
machine, or the site's login node over SSH. That host is an ordinary executor, and every
file operation goes through it.
"""
from __future__ import annotations

from typing import Any

from ..config import Config, SiteConfig
from .base import Executor


class ClusterExecutor(Executor):
    supports_sessions = False  # every cell is a one-shot runner, followed through its event log
    always_launcher = True

    def __init__(self, site: SiteConfig, config: Config):
        super().__init__(site, config)
        if site.host:
            from .ssh import SshExecutor
            self.host: Executor = SshExecutor(site, config)
        else:
            from .local import LocalExecutor
            self.host = LocalExecutor(site, config)

    @property
    def workdir(self) -> str:
        return self.host.workdir

    @property
    def python(self) -> str:
        return self.host.python

    async def probe(self) -> dict[str, Any]:
        return await self.host.probe()

    async def read_file(self, path: str, offset: int = 0) -> bytes:
        return await self.host.read_file(path, offset)

    async def write_file(self, path: str, data: bytes) -> None:
        await self.host.write_file(path, data)

    async def reconnect(self) -> None:
        await self.host.reconnect()

    async def close(self) -> None:
        await self.host.close()
