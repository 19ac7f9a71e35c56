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
    """Base of the executors that submit each run as a scheduler job (Slurm, Ray).

    No sessions: every cell is a one-shot runner under the launcher, followed through its event log.
    Files and probes go through `host`: an SshExecutor for the login node where the site sets `host`,
    else a LocalExecutor on this machine.
    """

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
        """The host's workdir; the jobs run in folders under it, so their nodes must see it too."""
        return self.host.workdir

    @property
    def python(self) -> str:
        """The host's python; the jobs run the same path on their nodes."""
        return self.host.python

    async def probe(self) -> dict[str, Any]:
        """Versions of the host's python, taken as the jobs' own."""
        return await self.host.probe()

    async def read_file(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        """A file on the host from `offset` (below 0: from its end), at most `size` bytes;
        FileNotFoundError if it is absent."""
        return await self.host.read_file(path, offset, size)

    async def file_info(self, path: str) -> tuple[int, float] | None:
        """The file's (size, modification time) on the host."""
        return await self.host.file_info(path)

    async def write_file(self, path: str, data: bytes) -> None:
        """Write a file on the host, atomically."""
        await self.host.write_file(path, data)

    async def remove_run_dir(self, run_dir: str, run_id: str) -> None:
        """Delete the run's folder on the host (only its own: `run_dir_to_remove`)."""
        await self.host.remove_run_dir(run_dir, run_id)

    async def reconnect(self) -> None:
        """Re-establish the host's connection (a no-op on this machine)."""
        await self.host.reconnect()

    async def close(self) -> None:
        """Release the host's connection."""
        await self.host.close()
