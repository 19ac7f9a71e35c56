"""Sending a plan's files: parallel streams, verification overlapping the sends, resends.

Each arrived file is verified while others still stream: on an SFTP server
arrivals are hashed in batches by the process the copy keeps there (a command
costs a session setup, so never one per file; small files it wrote come back
hashed as stored); an upload to S3 by its ETag (the MD5 of
the object or of its parts, computed by S3 from what it stored); anything else is
read back. A mismatch deletes the file and sends it again, up to `retries` rounds,
then fails naming it.
"""
from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import s3parts
from .fsutil import explain, hash_many, make_dirs
from .plan import Item, Plan
from ..progress import Progress
from .stream import send_small, send_with_retries
from .width import START

# On SFTP, start a verification batch once this many bytes or files have arrived.
VERIFY_BATCH = 16 << 20
VERIFY_BATCH_FILES = 500
# Many small files in flight hide round trips; a few big ones fill a near link, and
# more only fight over the CPU (measured on loopback: two 20 MB streams beat eight).
# Over a far link (60 ms) four 20 MB files, each on its own SFTP session, went 20%
# faster than two, and on loopback within noise of them.
IN_FLIGHT_BYTES = 80 << 20
# An object store spends its time waiting on requests, not on this CPU: more in flight.
IN_FLIGHT_BYTES_OBJECT_STORE = 96 << 20
# Files up to this size bound for SFTP (s3parts.MULTIPART_MIN for object stores) go whole, in batches.
SMALL_MAX = 256 << 10
SMALL_BATCH = 256
SMALL_BATCH_BYTES = 16 << 20


class ByteBudget:
    """Admits a file's send while fewer than two are read, or the bytes of those read stay under the
    budget, and fewer than `most` are read; `scale` (read as sends wait) multiplies the budget: a copy
    as wide as a far link needs more files in flight.

    A send holds its place until its source is read to the end (`held`'s release), not until the
    server confirmed its last byte: the files in flight, read at one pace, end their reads together,
    and then the source's link would idle while the destination's drains what they sent (S3 to SFTP
    through two border x 0.25 links: the S3 link idle 3 s of every 12).
    """

    def __init__(self, budget: int, scale: Callable[[], int] = lambda: 1, most: int = 1 << 30):
        self._budget, self._scale, self._most, self._bytes, self._count = budget, scale, most, 0, 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def held(self, size: int) -> Iterator[Callable[[], None]]:
        """Wait until a send of `size` bytes fits, and hold its place; gives the release (called at the
        latest on leaving). Two sends are always let in, so one file bigger than the budget still goes."""
        with self._cond:
            while not (self._count < self._most and (self._count < 2 or self._bytes + size <= self._budget * self._scale())):
                self._cond.wait(0.25)  # a read ends, or the width (the scale) grew
            self._bytes += size
            self._count += 1
        holding = [True]

        def release() -> None:
            with self._cond:
                if holding:
                    holding.clear()
                    self._bytes -= size
                    self._count -= 1
                    self._cond.notify_all()
        try:
            yield release
        finally:
            release()


@dataclass
class Outcome:
    """What the send rounds of one copy did: files that arrived, that verified, and that failed (rel -> why)."""

    sent: list[Item] = field(default_factory=list)       # every send that arrived (a resend counts again)
    verified: list[Item] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # rel -> why


def _widening(plan: Plan) -> Callable[[], int]:
    """The copy's width over the width it started at (1 on a near link, where it does not grow): the
    in-flight budget grows with it. A file holds its bytes of the budget
    until the server confirmed its last piece, seconds after it was sent on a far link; with the
    near link's budget the files in flight end together and the link idles while the next ones open
    (border x 0.25: 0.65 of the link's cap; twice the files in flight, 0.75)."""
    pools = [side.streams for side in (plan.dest, plan.src) if side.sftp]
    if not pools:
        return lambda: 1
    width = pools[0].width
    return lambda: max(1, width.target // START)


def start_connections(plan: Plan, items: list[Item]) -> None:
    """Open, without waiting, what sending `items` will use on SFTP servers: the server process that
    writes and verifies, and the connections big files go over (several: see `width.py`). Called
    again, it opens nothing twice."""
    if plan.dest.sftp and items:
        plan.dest.worker.start_soon()
    for side in (plan.src, plan.dest):
        if side.sftp and any(item.size > SMALL_MAX for item in items):
            side.streams.start_soon()


def send_all(plan: Plan, items: list[Item], bar: Progress, *, chunk: int, workers: int, retries: int,
             backoff: float) -> Outcome:
    """Send `items`, verify each as stored, and resend the ones that do not match, up to `retries` rounds.

    Never raises for a file: failures come back in `Outcome.failed`, which the engine reports.
    """
    outcome = Outcome()
    pending = list(items)
    start_connections(plan, items)
    try:
        make_dirs(plan.dest, plan.parents(items))
    except OSError as exc:
        why = explain(exc, plan.dest.url)
        outcome.failed.update((item.rel, why) for item in items)
        return outcome
    for round_ in range(retries + 1):
        mismatched = _round(plan, pending, bar, outcome, chunk=chunk, workers=workers, retries=retries, backoff=backoff)
        pending = []
        for item, why in mismatched:
            if round_ == retries:
                outcome.failed[item.rel] = why
            else:
                bar.update(item.resume_from - item.size)  # its bytes go again
                bar.file_done(-1)
                item.resume_from = 0
                pending.append(item)
        if not pending:
            break
    return outcome


def _round(plan: Plan, items: list[Item], bar: Progress, outcome: Outcome, *, chunk: int, workers: int,
           retries: int, backoff: float) -> list[tuple[Item, str]]:
    """One pass over `items`; returns the ones whose stored bytes did not verify."""
    mismatched: list[tuple[Item, str]] = []
    batch: list[Item] = []
    batch_bytes = 0
    workers = max(1, workers)
    budget = ByteBudget(IN_FLIGHT_BYTES_OBJECT_STORE if plan.dest.object_store else IN_FLIGHT_BYTES, _widening(plan),
                        most=workers)
    options = {"chunk": chunk, "retries": retries, "backoff": backoff, "on_bytes": bar.update}
    # `workers` files read at once, as many more still sending what they read (see ByteBudget)
    with ThreadPoolExecutor(max_workers=2 * workers) as senders, ThreadPoolExecutor(max_workers=2) as checkers:
        sends: set[Future] = set()
        small, big = _split(plan, items)
        for group in small:
            sends.add(senders.submit(_send_small, plan, group, budget, options))
        for item in big:
            sends.add(senders.submit(_send_one, plan, item, budget, options))
        checks: list[Future] = []
        left = len(sends)
        # as_completed waits on all of them at once; wait(FIRST_COMPLETED) in a loop costs a
        # pass over every pending future per wake-up, quadratic in a tree of 10,000 files
        for future in as_completed(sends):
            left -= 1
            for item, error in future.result():
                if error is not None:
                    outcome.failed[item.rel] = explain(error, plan.dest.fs.unstrip_protocol(plan.write_path(item.rel)))
                    continue
                outcome.sent.append(item)
                bar.file_done()
                if item.checked:
                    outcome.verified.append(item)
                    continue
                batch.append(item)
                batch_bytes += item.size
            if batch and (not left or not plan.dest.sftp or batch_bytes >= VERIFY_BATCH
                          or len(batch) >= VERIFY_BATCH_FILES):
                checks.append(checkers.submit(_verify, plan, batch, chunk, retries, backoff))
                batch, batch_bytes = [], 0
        for check in checks:
            for item, why in check.result():
                if why is None:
                    outcome.verified.append(item)
                else:
                    mismatched.append((item, why))
    return mismatched


def _send_small(plan: Plan, items: list[Item], budget: ByteBudget, options: dict) -> list[tuple[Item, BaseException | None]]:
    with budget.held(sum(i.size for i in items)):
        return send_small(plan, items, **options)


def _send_one(plan: Plan, item: Item, budget: ByteBudget, options: dict) -> list[tuple[Item, BaseException | None]]:
    with budget.held(item.size) as read:
        try:
            send_with_retries(plan, item, on_read=read, **options)
        except Exception as exc:
            return [(item, exc)]
    return [(item, None)]


def _split(plan: Plan, items: list[Item]) -> tuple[list[list[Item]], list[Item]]:
    """Files to send whole from memory, in batches (one loop hop each), and those to stream.

    On an object store every file under MULTIPART_MIN is one PUT anyway; elsewhere only
    small ones gain, as each still needs its own open and close. A batch costs one task
    rather than one per file (a thread, and a hop to the filesystem's event loop, each),
    and its reads from a remote store are all in flight at once.
    """
    limit = s3parts.MULTIPART_MIN if plan.dest.object_store else SMALL_MAX
    whole = [item for item in items if item.size < limit]
    groups: list[list[Item]] = []
    size = 0
    for item in whole:
        if not groups or size + item.size > SMALL_BATCH_BYTES or len(groups[-1]) == SMALL_BATCH:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += item.size
    return groups, [item for item in items if item.size >= limit]


def _verify(plan: Plan, items: list[Item], chunk: int, retries: int, backoff: float) -> list[tuple[Item, str | None]]:
    """(item, None) when the destination holds the item's bytes, else (item, why) after deleting them."""
    paths = {plan.write_path(item.rel): item for item in items}
    for attempt in range(retries + 1):
        try:
            stored = hash_many(plan.dest, {path: item.size for path, item in paths.items()}, chunk, None)
            break
        except OSError:
            if attempt == retries:
                raise
            time.sleep(backoff * 2 ** attempt)
            plan.dest.revive()  # a dropped link: hash on a new connection
    results: list[tuple[Item, str | None]] = []
    for path, item in paths.items():
        if stored[path] == item.sha256:
            results.append((item, None))
            continue
        results.append((item, f"{plan.dest.fs.unstrip_protocol(path)} failed verification: it holds sha256 "
                              f"{stored[path]}, the source has {item.sha256}"))
        if stored[path] is not None:
            plan.dest.fs.rm_file(path)
    return results
