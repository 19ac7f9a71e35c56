"""A run's log found by the run's id, for `logs`, `Split.run_tail`, `Split.run_tail_lines` and `Split.iter_run_events`: read
through its site's executor, or, for a run this machine's local executor started (its handle says so),
straight from the files here. That one needs no config: the config's models are most of a short
command's start-up, and a run's log stays where it was written whatever the config says now."""
from __future__ import annotations

from typing import Any, Callable, Iterator

from .. import aio
from ..executors.files import ON_THIS_MACHINE, LocalFiles, LogFiles
from ..protocol import rank_dir
from ..runs.index import RunIndex, RunRecord
from . import lines as log_lines, replay


def open_log(run_id: str, executor: Callable[[str], LogFiles], index: RunIndex | None = None) -> tuple[RunRecord, LogFiles]:
    """The run's record and what reads its files: `LocalFiles` for a local run, else `executor(site)`
    (only then is the config needed). Raises UnknownRun as `RunIndex.get` does."""
    record = (index or RunIndex()).get(run_id)
    if record.handle.get(ON_THIS_MACHINE):
        return record, LocalFiles(record.site)
    return record, executor(record.site)


def tail(record: RunRecord, files: LogFiles, count: int, rank: int = 0) -> list[dict[str, Any]]:
    """The run's (or rank `rank`'s) last `count` records, read back from its log's end."""
    return aio.run(replay.tail(files, rank_dir(record.run_dir, rank), count))


def tail_lines(record: RunRecord, files: LogFiles, lines: int, rank: int = 0) -> list[dict[str, Any]]:
    """The run's (or rank `rank`'s) records that show its last `lines` lines (`lines.tail_lines`: the
    first one kept cut to them), read back from its log's end."""
    run_dir = rank_dir(record.run_dir, rank)
    return log_lines.tail_lines(lambda count: aio.run(replay.tail(files, run_dir, count)), lines)


def chunks(record: RunRecord, files: LogFiles, after: int = 0, rank: int = 0) -> Iterator[list[dict[str, Any]]]:
    """The run's records after `after` to its log's end, a chunk at a time (then the record kept beside
    a log with no final one): one pass over the log, in the memory of one chunk."""
    reader = replay.LogReader(files, rank_dir(record.run_dir, rank), after)
    while True:
        events, at_end = aio.run(reader.chunk())
        if events:
            yield events
        if at_end:
            break
    if (ended := aio.run(reader.ended())) is not None:
        yield [ended]
