"""Judging the files a copy would send by what they are, not only by the path they were listed under.

For each file: the path as listed and as the kernel resolves it (symlinks at any depth)
against `policy.resident`; for a file on this machine (a local source, or an SFTP server
here), its (device, inode) and its content against the resident index (hard links, bind
mounts, copies under another name); for a file elsewhere, its content by hash where its
size is a resident file's. Bound for a foreign jurisdiction, every file's content is then
scanned for personal information (`scan`). A local file's identity is pinned as judged:
the copy reads it only while it is still that file (`Pin.check`), so swapping it for
another between the check and the send is refused too (`pins`).
"""
from __future__ import annotations

import bisect
import hashlib
import io
import os
import stat as stat_mod
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..config import Config
from .fingerprints import ResidentIndex, sha256_many
from .locations import redact, resolved
from .busy import untracked
from .kept import SMALL_FILE, size_of, spool_scan, to_keep, to_spool
from .pins import Pin, Source, SourceFile, open_pinned, read_pinned

# How many files a refusal names for one reason before it says how many more.
NAMED_FILES = 5
SCAN_THREADS = 4
# Files of a source elsewhere (S3, SFTP) scanned at once: their reads wait on a link, where one
# flow gets only its share, not on this machine's CPU. As many as a checkpoint has shards, often:
# the 20 shards' headers read 16 at a time took two round trips through a border link, 0.45 s.
REMOTE_SCAN_THREADS = 32


# The order a refusal gives its reasons in, whatever order they were found in.
_KIND_ORDER = {"path": 0, "same file": 1, "same content": 2, "scan": 3}


@dataclass
class Verdict:
    """What the files of a copy carry: label origins (for the guard), findings (for the audit log)."""

    origins: dict[str, str] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    _reasons: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, code: str, reason: str, kind: str) -> None:
        """Record why one file carries label `code`; `kind` (path, same file, scan...) groups the reasons."""
        self._reasons.setdefault((code, kind), []).append(reason)

    def close(self) -> "Verdict":
        """Fold the reasons into `origins`, at most NAMED_FILES per label and kind, then a count; returns self."""
        for (code, _), reasons in sorted(self._reasons.items(), key=lambda kv: _KIND_ORDER.get(kv[0][1], len(_KIND_ORDER))):
            shown = "; ".join(reasons[:NAMED_FILES])
            more = len(reasons) - NAMED_FILES
            text = shown + (f"; and {more} more file{'s' if more > 1 else ''}" if more > 0 else "")
            self.origins[code] = f"{self.origins[code]}; and {text}" if code in self.origins else text
        self._reasons.clear()
        return self


def judge(source: Source, files: Sequence[SourceFile], config: Config, index: ResidentIndex,
          path_origins: Callable[..., Mapping[str, str]], scanner: Any | None = None) -> Verdict:
    """Label origins of `files` by path, identity, content and (with `scanner`) a content scan.

    `path_origins(url, contains=False)` gives a location's labels by path (the guard's own
    lookup; `contains`: also if it may hold a resident location). Local files get `pin` set.
    Raises nothing for a resident file: the verdict says why it is.
    """
    verdict = Verdict()
    home = config.home.jurisdiction
    here = source.here
    base = source.url.rstrip("/")
    # Under a folder whose real path may hold no resident location, only a file reached
    # through a symlink can have a resident path (a bind mount or hard link is found by inode).
    may_hold = not (source.local and source.root) or bool(path_origins(source.root, contains=True))
    judged: list[tuple[SourceFile, os.stat_result | None, str]] = []  # files no path labels as home's
    for item in files:
        shown = f"{item.rel}" if item.rel else redact(source.url)
        url = item.path if here else f"{base}/{item.rel}" if item.rel else source.url
        by_path = path_origins(url) if may_hold or item.linked is not False else {}
        if by_path and here:
            real = resolved(item.path)
            shown += f" (which resolves to {real})" if real != os.path.normpath(item.path) else ""
        for code, why in by_path.items():
            verdict.add(code, f"{shown}: {why}", "path")
        st = _pin(item) if here else None
        if home not in by_path:  # one reason a file is enough
            judged.append((item, st, shown))
    prints = None
    if scanner is not None:
        prints = MemberPrints(scanner, index.sizes())
        _scan(source, [item for item in files if item.sent], prints, verdict, home)
    _fingerprints(source, judged, index, verdict, home)
    for where, size, digest in prints.members if prints else ():
        match = index.same_content(size, digest)
        if match is not None:
            verdict.add(home, match.describe(where), match.how)
    return verdict.close()


def _fingerprints(source: Source, judged: Sequence[tuple[SourceFile, os.stat_result | None, str]],
                  index: ResidentIndex, verdict: Verdict, home: str) -> None:
    """Find the files that are a resident file (same device and inode) or hold its bytes (same sha256)."""
    sizes = index.sizes()
    collided: list[SourceFile] = []
    local_collided: list[tuple[SourceFile, os.stat_result, str]] = []
    for item, st, shown in judged:
        if source.here:
            match = index.same_file(st) if st is not None else None
            if match is not None:
                verdict.add(home, match.describe(shown), match.how)
            elif st is not None and st.st_size in sizes:
                local_collided.append((item, st, shown))
        elif item.size in sizes:
            collided.append(item)
    if local_collided:
        index.prefetch(st.st_size for _, st, _ in local_collided)
        digests = sha256_many([(item.path, st) for item, st, _ in local_collided])
        for (item, st, shown), digest in zip(local_collided, digests):
            match = index.same_content(st.st_size, digest)
            if match is not None:
                verdict.add(home, match.describe(shown), match.how)
    if collided:
        index.prefetch(item.size for item in collided)
        digests = source.sha256([item.path for item in collided])
        for item in collided:
            match = index.same_content(item.size, digests.get(item.path))
            if match is not None:
                verdict.add(home, match.describe(item.rel or redact(source.url)), match.how)


def _pin(item: SourceFile) -> os.stat_result | None:
    """The stat of a local file as the copy will open it, pinned; None if it is gone or not a file."""
    seen_ns = time.time_ns()  # before the stat: a hash recorded for this version errs on the safe side
    try:
        st = os.stat(item.path)  # follows every symlink on the way, as the copy's open will
    except (OSError, ValueError):
        return None  # gone: the copy fails on it, sending nothing of it
    if not stat_mod.S_ISREG(st.st_mode):
        return None
    item.pin = Pin.of(item.path, st, seen_ns)
    return st


def _scan(source: Source, files: Sequence[SourceFile], scanner: Any, verdict: Verdict, home: str) -> None:
    keep, spool = to_keep(files), to_spool(files, source.spool)

    def batch(items: Sequence[tuple[int, SourceFile]]) -> list[Any]:
        with untracked():  # the guard reading a file to judge it is no read of the process's
            return _scan_batch(items, keep, spool, source, scanner)

    # a thread per batch, not per file: thousands of small files cost their scan, not a hand-off each
    results: list[Any] = []
    threads = SCAN_THREADS if source.local else REMOTE_SCAN_THREADS
    batches = _batches(list(enumerate(files)), threads * 4)
    if len(batches) > 1:
        for done in _scan_pool(threads).map(batch, batches):
            results += done
    else:
        results = batch(list(enumerate(files)))
    for item, result in zip(files, results):
        shown = item.rel or redact(source.url)
        if isinstance(result, BaseException):
            verdict.add(home, f"{shown}: its content could not be scanned ({type(result).__name__}: {result})", "scan")
            continue
        for finding in result.findings:
            verdict.add(home, f"{shown}: the content scan found {finding.describe()}", "scan")
            verdict.findings.append(finding.record(shown))
        for unscannable in result.unscannable:
            verdict.add(home, f"{shown}: {unscannable.describe()}", "scan")


_pool: dict[int, ThreadPoolExecutor] = {}  # the scan's threads by count, made once: starting them per copy cost ms


def _scan_pool(threads: int) -> ThreadPoolExecutor:
    # made once per size: a copy does not pay for starting threads
    if threads not in _pool:
        _pool[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jupyter_split scan")
    return _pool[threads]


os.register_at_fork(after_in_child=_pool.clear)  # a child has none of its parent's threads


class MemberPrints:
    """The scanner, hashing each archive member it reads whole (`outer.zip!people.csv`), so a
    resident file inside a zip, tar or gz is found by its fingerprint as a plain copy is."""

    def __init__(self, scanner: Any, sizes: frozenset[int]):
        self._scanner, self._sizes = scanner, sizes
        self.members: list[tuple[str, int, str]] = []  # (where, size, sha256) of members of a resident size
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scanner, name)

    def scan_file(self, handle: Any, where: str, size: int | None = None) -> Any:
        """Scan a file as the scanner does, so that each archive member read whole is also hashed."""
        from .findings import ScanResult
        from .scan_archive import walk

        result = ScanResult(limit=self._scanner.max_findings)
        walk(self, handle, where, size, result)  # so members reach this scan_text
        return result

    def scan_bytes(self, data: bytes, where: str) -> Any:
        """Scan bytes in memory as `scan_file` does."""
        return self.scan_file(io.BytesIO(data), where, len(data))

    def scan_text(self, reader: Any, where: str, result: Any, base: int = 0) -> None:
        """The scanner's `scan_text`; an archive member (`where` holds `!`) of a resident size is also hashed.

        The top-level file is not hashed here: the fingerprint index judged it already.
        """
        if "!" not in where:  # the file itself: the fingerprint index judged it already
            return self._scanner.scan_text(reader, where, result, base)
        counted = _Hashing(reader)
        self._scanner.scan_text(counted, where, result, base)
        if counted.ended and counted.count in self._sizes:
            with self._lock:
                self.members.append((where, counted.count, counted.digest.hexdigest()))


class _Hashing:
    """A reader that hashes and counts what passes through it."""

    def __init__(self, reader: Any):
        self.reader, self.digest, self.count, self.ended = reader, hashlib.sha256(), 0, False

    def read(self, size: int = -1) -> bytes:
        data = self.reader.read(size)
        if data:
            self.digest.update(data)
            self.count += len(data)
        else:
            self.ended = True
        return data


def _scan_batch(items: Sequence[tuple[int, SourceFile]], keep: set[int], spool: set[int], source: Source,
                scanner: Any) -> list[Any]:
    """Scan results (or exceptions) of `items`: small text files searched together in one buffer,
    everything else file by file; what was read kept for the copy where `keep` or `spool` says (`kept`)."""
    from .scan_archive import HEAD, identify

    results: list[Any] = [None] * len(items)
    joined: list[tuple[int, SourceFile, bytes]] = []
    for slot, (i, item) in enumerate(items):
        where = item.rel or redact(source.url)
        try:
            if size_of(item) <= SMALL_FILE:
                data = read_pinned(item) if item.pin is not None else _read_whole(item, source)
                if i in keep and len(data) == size_of(item):
                    item.data = data  # sent as scanned: no second read, and no window to change it
                if identify(data[:HEAD]) == "plain":
                    joined.append((slot, item, data))
                else:
                    results[slot] = scanner.scan_bytes(data, where)
            else:
                with open_pinned(item, source) as handle:
                    if i in spool:
                        spooled = os.path.join(source.spool.path, f"{i}")
                        results[slot] = spool_scan(item, handle, spooled,
                                                   lambda reader: scanner.scan_file(reader, where=where, size=item.size))
                    else:
                        results[slot] = scanner.scan_file(handle, where=where, size=item.size)
                    item.etag = getattr(handle, "etag", None)  # the version judged (S3): a send from it reads that one
        except Exception as exc:  # noqa: BLE001 - a file that cannot be scanned is refused, with why
            results[slot] = exc
    if joined:
        _scan_joined(joined, results, source, scanner)
    return results


def _read_whole(item: SourceFile, source: Source) -> bytes:
    """A small file of a source elsewhere, read whole (its size as listed, or what it holds now)."""
    with source.open(item.path) as handle:
        return handle.read(item.size + 1)


# Between files searched together: a NUL between newlines, which no built-in kind matches across.
_SEPARATOR = b"\n\0\n"


def _scan_joined(joined: list[tuple[int, SourceFile, bytes]], results: list[Any], source: Source, scanner: Any) -> None:
    """One search over many small files' bytes: the matcher's fixed cost is paid once, not per file."""
    from .findings import ScanResult

    starts, parts, offset = [], [], 0
    for _, _, data in joined:
        starts.append(offset)
        parts.append(data)
        offset += len(data) + len(_SEPARATOR)
    together = ScanResult(limit=scanner.max_findings)
    scanner.scan_text(io.BytesIO(_SEPARATOR.join(parts)), "", together)
    for slot, _, _ in joined:
        results[slot] = ScanResult(limit=scanner.max_findings)
    for finding in together.findings:
        k = bisect.bisect_right(starts, finding.offset) - 1
        slot, item, _ = joined[k]
        where = item.rel or redact(source.url)
        results[slot].add(finding.moved(where, finding.offset - starts[k]))


def _batches(files: list[tuple[int, SourceFile]], count: int) -> list[list[tuple[int, SourceFile]]]:
    """`files` cut into at most about `count` runs of equal bytes (a large file alone is a run)."""
    total = sum(item.size for _, item in files) or 1
    share = total / count
    runs: list[list[tuple[int, SourceFile]]] = []
    start, held = 0, 0
    for i, (_, item) in enumerate(files):
        held += item.size
        if held >= share:
            runs.append(files[start:i + 1])
            start, held = i + 1, 0
    if start < len(files):
        runs.append(files[start:])
    return runs
