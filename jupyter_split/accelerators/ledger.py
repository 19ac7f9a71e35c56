"""The lease's ledger: what each site's ended runs used, kept between polls, so that a poll of the lease
reads the run index's changes alone and costs the same at 100 runs and at 100,000.

An ended run's hours no longer change (its end is the index's last update of its row), so the ledger
keeps them, summed, and reads again only the rows added or updated since its last read; the runs still
going are counted again at every poll (their end is now). The sums are kept in ten-thousandths of an
hour, as integers: each run's hours are rounded to four places (`usage.run_row`), so the integer sums are
exact and a run taken out subtracts exactly what it added. A removal (`prune`) shows as fewer rows up to
the last one read than there were: then the ledger is filled again from the whole index, as on the first
poll, when the month turns and when the site's configuration changes.

On a Slurm site, `sacct`'s figures of an ended job are final: each is asked once (until sacct gives a
job's final figures, or, for a job it does not know, until the run ended `ACCOUNTING_LAG` ago), the going
runs' jobs at every poll.
"""
from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..protocol import TERMINAL_STATES

if TYPE_CHECKING:
    from ..config import SiteConfig
    from ..runs.index import RunIndex, RunRecord
    from .usage import Accounted

#: a write stamps its `updated` before it waits for the file's lock (RunIndex waits up to 30 s): the rows
#: stamped this many seconds before a read began are read again at the next poll
MARGIN = 120.0
#: how long after a run ended Slurm accounting may still learn of its job (slurmdbd catching up)
ACCOUNTING_LAG = 600.0
#: one unit of the integer sums: a ten-thousandth of an hour, the rounding of each run's hours
UNIT = 10_000


def units(hours: float) -> int:
    """Hours rounded to four places, as an exact integer of ten-thousandths."""
    return round(hours * UNIT)


@dataclass(eq=False)
class SiteBook:
    """One site's ended runs as the ledger last read them, with the runs still going."""

    key: tuple[Any, ...]
    version: int = -1
    last_row: int = 0
    total: int = 0
    read: float = float("-inf")
    #: run id -> (order, hours, month hours in units) of each ended run; order: (start, creation)
    ended: dict[str, tuple[tuple[float, float], int, int]] = field(default_factory=dict)
    #: the rows of the newest `keep` ended runs by start (ties: by creation): the ones an answer may list
    top: dict[str, dict[str, Any]] = field(default_factory=dict)
    hours: int = 0
    month: int = 0
    going: dict[str, "RunRecord"] = field(default_factory=dict)
    #: sacct's final figures of ended runs' jobs; the jobs it does not know; the ended runs still waiting
    jobs: dict[str, "Accounted"] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)
    waiting: dict[str, "RunRecord"] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget what was read: the next read is of the whole index."""
        lock = self.lock
        self.__init__(self.key)  # type: ignore[misc]
        self.lock = lock  # another thread may wait on it


#: (index file, site) -> its book; the server asks from several threads
_BOOKS: dict[tuple[str, str], SiteBook] = {}
_LOCK = threading.Lock()


@dataclass
class Ledger:
    """A site's use: reads the index's changes into the site's book, then answers its totals and rows.

    `row(record, accounted)` is `usage.run_row` for the site, the month and now; `keep` how many rows an
    answer lists (`usage.RUN_ROWS`); `accounting(jobs)`, on a Slurm site, sacct's figures of `jobs`
    (None where sacct could not be asked)."""

    index: "RunIndex"
    site: "SiteConfig"
    since: float
    row: Callable[["RunRecord", Mapping[str, "Accounted"]], dict[str, Any]]
    keep: int
    accounting: Callable[[list[str]], dict[str, "Accounted"] | None] | None = None

    def use(self, now: float) -> tuple[int, int, int, list[dict[str, Any]], list["RunRecord"], dict[str, "Accounted"]]:
        """(hours and month hours of the ended runs in units, runs counted, the newest ended runs' rows, the
        going runs' records and sacct's figures of their jobs), the index's changes read first."""
        key = (str(self.index.path), self.site.name)
        shape = (self.site.accelerator, self.site.executor, self.site.lease.price_per_gpu_hour, self.since)
        with _LOCK:
            book = _BOOKS.get(key)
            if book is None or book.key != shape:
                book = _BOOKS[key] = SiteBook(shape)
        with book.lock:
            self._read(book)
            going = self._settle(book, now) if self.accounting else {}
            counted = len(book.ended) + len(book.going)
            return book.hours, book.month, counted, list(book.top.values()), list(book.going.values()), going

    def _read(self, book: SiteBook) -> None:
        # by this machine's clock, as `RunIndex.update` stamps `updated`: the rows stamped after this read
        # began are read at the next (a row's own times may be anything: a row added whole keeps its own)
        began = time.time()
        if self.index.version() == book.version:
            return  # one row read: nothing changed
        version, last, total, kept, records = self.index.changes(self.site.name, book.last_row, book.read - MARGIN)
        if kept < book.total:  # rows went: read the whole index again
            book.reset()
            return self._read(book)
        first = book.version < 0
        for record in records:
            self._take(book, record, top=not first)  # the first read finds the newest at its end
        book.version, book.last_row, book.total = version, last, total
        book.read = began
        self._trim(book)

    def _take(self, book: SiteBook, record: "RunRecord", accounted: Mapping[str, "Accounted"] | None = None,
              top: bool = True) -> None:
        """Put `record` in the book in place of its earlier row, if any; `top`: among the newest rows if it
        is one of them."""
        self._drop(book, record.run_id)
        if record.state not in TERMINAL_STATES:
            book.going[record.run_id] = record
            return
        job = record.handle.get("job_id")
        if self.accounting and job and job not in book.jobs and job not in book.unknown:
            book.waiting[job] = record
        row = self.row(record, book.jobs if accounted is None else accounted)
        order, hours, month = (row["started"], record.created), units(row["hours"]), units(row["month_hours"])
        book.ended[record.run_id] = (order, hours, month)
        book.hours += hours
        book.month += month
        if top and (len(book.top) < self.keep or order > min(book.ended[r][0] for r in book.top)):
            book.top[record.run_id] = row

    def _drop(self, book: SiteBook, run_id: str) -> None:
        book.going.pop(run_id, None)
        old = book.ended.pop(run_id, None)
        if old is not None:
            book.hours -= old[1]
            book.month -= old[2]
            book.top.pop(run_id, None)

    def _trim(self, book: SiteBook) -> None:
        """Keep the rows of the newest `keep` ended runs: cut the extra ones; where a run that left them
        let an older one in (rare), find it among all and read its row again."""
        if len(book.top) > self.keep:
            for run_id in sorted(book.top, key=lambda r: book.ended[r][0])[:len(book.top) - self.keep]:
                del book.top[run_id]
        elif len(book.top) < min(self.keep, len(book.ended)):
            newest = heapq.nlargest(self.keep, book.ended, key=lambda r: book.ended[r][0])
            for run_id in set(newest) - set(book.top):
                record = self.index.get(run_id)
                book.top[run_id] = self.row(record, book.jobs)

    def _settle(self, book: SiteBook, now: float) -> dict[str, "Accounted"]:
        """Ask sacct of the going runs' jobs and of the ended ones still waiting for final figures; an ended
        run whose figures came is counted again with them. Returns the going runs' jobs' figures."""
        asked = [str(r.handle["job_id"]) for r in book.going.values() if r.handle.get("job_id")] + list(book.waiting)
        answer = self.accounting(asked) if asked and self.accounting else None
        if answer is None:
            return {}
        for job, record in list(book.waiting.items()):
            figures = answer.get(job)
            if figures is not None and figures.final:
                book.jobs[job] = figures
            elif figures is None and now - record.updated >= ACCOUNTING_LAG:
                book.unknown.add(job)  # accounting keeps none of it: the index's figures stand
            elif figures is None:
                continue  # accounting may not have it yet: asked again at the next poll
            else:  # still going in Slurm: its figures as they are now, asked again at the next poll
                self._take(book, record, {job: figures})
                continue
            del book.waiting[job]
            self._take(book, record)
        self._trim(book)
        return answer


def clear() -> None:
    """Forget every book: the next poll of each site reads its whole index again (tests)."""
    with _LOCK:
        _BOOKS.clear()
