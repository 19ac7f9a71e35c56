"""Pruning the run index by age, and with it, when asked, the runs' directories on their sites."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .. import aio
from ..errors import SplitError
from ..runs.index import RunRecord
from .split import Split

# removals at once: an SSH server allows a few sessions per connection (OpenSSH's MaxSessions is 10)
CONCURRENT = 8


@dataclass
class Pruned:
    """What a prune did: the rows it removed, and the runs it kept because their directory could
    not be deleted (run id -> why), so no run directory is ever left without its row."""

    removed: list[RunRecord] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)


def prune_runs(split: Split, before: float, site: str | None = None, delete_dirs: bool = False) -> Pruned:
    """Remove from the run index the runs that ended before `before` (seconds since the epoch).

    `delete_dirs`: delete each one's run directory on its site first (`Executor.remove_run_dir`:
    only a run's own folder under the site's workdir); a run whose directory cannot be deleted
    (an unreachable site, a folder that is not where its site keeps runs) keeps its row, and
    says why, so running the prune again finishes the job.
    """
    result = Pruned()

    def delete(rows: list[RunRecord]) -> set[str]:
        async def one(row: RunRecord) -> None:
            try:
                async with limit:
                    await split.executor(row.site).remove_run_dir(row.run_dir, row.run_id)
            except (SplitError, OSError, ConnectionError) as exc:
                result.kept[row.run_id] = f"{type(exc).__name__}: {exc}"

        limit = asyncio.Semaphore(CONCURRENT)

        async def every() -> None:
            await asyncio.gather(*(one(row) for row in rows))

        aio.run(every())
        return set(result.kept)

    result.removed = split.index.prune(before, site, keep=delete if delete_dirs else None)
    return result
