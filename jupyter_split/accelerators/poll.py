"""Readings of every site's accelerators, kept no longer than `[accelerators] interval`.

A reading is taken only when asked for (a `top` verb, the sidebar's request while its pane is
open), and one younger than the interval is answered from memory: however many callers ask,
a site is probed at most once an interval, over its existing connection. Nobody asking means
no probe at all.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import aio
from ..errors import SplitError
from ..protocol import TERMINAL_STATES
from . import cluster
from .probe import PROBE_TIMEOUT, read_host

if TYPE_CHECKING:
    from ..config import SiteConfig
    from ..core.split import Split


def active_runs(split: "Split", site: str, limit: int = 500) -> list[Any]:
    """The runs of `site` the index does not know to have ended (those that may hold cards)."""
    return [r for r in split.index.list(site, limit) if r.state not in TERMINAL_STATES]


async def read_site(split: "Split", site: "SiteConfig") -> dict[str, Any]:
    """One site's reading: its machine (or login node), and Slurm's nodes and jobs or Ray's resources.

    A site that cannot be reached is a reading with `errors`, not an exception, so one site that
    is down does not hide the others.
    """
    reading: dict[str, Any] = {"site": site.name, "executor": site.executor, "accelerator": site.accelerator,
                               "time": time.time(), "nodes": [], "errors": []}
    records = active_runs(split, site.name)
    try:
        ex = split.executor(site)
        host = await asyncio.wait_for(read_host(ex, records), PROBE_TIMEOUT + site.connect_timeout)
        reading["nodes"].append({**host, "role": "login" if ex.kind == "slurm" else "host"})
        if ex.kind == "slurm":
            reading["slurm"] = await cluster.slurm(ex, records)
            # the cards are on the compute nodes: each running job of this experiment is read inside it
            nodes, errors = await cluster.job_nodes(ex, reading["slurm"]["jobs"], PROBE_TIMEOUT + site.connect_timeout)
            reading["nodes"].extend(nodes)
            reading["slurm"]["errors"].extend(errors)
        elif ex.kind == "ray":
            reading["ray"] = await cluster.ray(ex)
    except (OSError, SplitError, asyncio.TimeoutError) as exc:
        reading["errors"].append(f"site {site.name!r}: {exc or type(exc).__name__}")
    reading["seconds"] = round(time.time() - reading["time"], 2)
    return reading


class Poller:
    """The readings of one `Split`'s sites, each reused until it is `interval` seconds old."""

    def __init__(self, split: "Split"):
        self.split = split
        self.interval = split.config.accelerators.interval
        self._cache: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def readings(self, site: str | None = None) -> dict[str, Any]:
        """{interval, sites}: the reading of `site` (every site where None), each no older than the
        interval. Raises ConfigError for an unknown site name."""
        sites = [self.split.config.site(site)] if site else list(self.split.config.sites.values())
        stale = [s for s in sites if not self._fresh(s.name)]
        if stale:
            locks = [self._lock(s.name) for s in stale]
            for lock in locks:  # one probe of a site at a time; a second caller waits and reuses it
                lock.acquire()
            try:
                todo = [s for s in stale if not self._fresh(s.name)]
                if todo:
                    for reading in aio.run(self._read(todo)):
                        self._cache[reading["site"]] = reading
            finally:
                for lock in locks:
                    lock.release()
        now = time.time()
        rows = [{**self._cache[s.name], "age": round(now - self._cache[s.name]["time"], 2)} for s in sites]
        return {"interval": self.interval, "sites": rows}

    async def _read(self, sites: list["SiteConfig"]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(read_site(self.split, s) for s in sites)))

    def _fresh(self, site: str) -> bool:
        cached = self._cache.get(site)
        return cached is not None and time.time() - cached["time"] < self.interval

    def _lock(self, site: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(site, threading.Lock())


_pollers: dict[int, Poller] = {}


def poller(split: "Split") -> Poller:
    """The process's poller for `split` (a new core, after a config change, gets a new one)."""
    found = _pollers.get(id(split))
    if found is None or found.split is not split:
        _pollers.clear()  # one core per process: an older one's readings are of an older config
        found = _pollers[id(split)] = Poller(split)
    return found
