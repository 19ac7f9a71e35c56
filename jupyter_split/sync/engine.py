"""`copy`: one checkpoint from any fsspec URL to any other, incremental, verified, atomic.

Phases: plan (manifests and listings, hashes only where needed), the residency
guard (once, before the first byte), send (bounded thread pool; each file
streamed, hashed, verified), commit (unpublish the old manifest if any, move
staged files in, publish the new manifest last, drop staging).
"""
from __future__ import annotations

import dataclasses
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import SplitError
from .. import policy, tracking, verified
from ..bounds import check_options
from ..config import Config, load_config
from ..names import check_location
from ..paths import data_dir
from . import s3parts, sftp
from ..residency.kept import SpoolFolder
from ..residency.pins import Source, SourceFile
from .fsutil import Location, explain, hash_many, make_dirs, move_all, open_read, resolve
from .manifest import (FileEntry, Manifest, PublishConflict, drop_temp_manifests, is_local, is_object_store,
                       manifest_path, publish)
from .plan import Action, Plan, make_plan, source_files
from ..progress import Progress
from .rounds import send_all, start_connections

CHUNK = 8 << 20
CONCURRENCY = 8


class SyncError(SplitError, RuntimeError):
    """A copy that did not finish; `done` and `failed` say which files made it."""

    def __init__(self, message: str, done: list[str] | None = None, failed: dict[str, str] | None = None):
        self.done = done or []
        self.failed = failed or {}
        lines = [message]
        if self.failed:
            lines.append(f"failed ({len(self.failed)}):")
            lines += [f"  {rel}: {why}" for rel, why in sorted(self.failed.items())]
        if self.done:
            shown = sorted(self.done)
            lines.append(f"made it ({len(shown)}), kept for the next run: " + ", ".join(shown[:20]) + (" ..." if len(shown) > 20 else ""))
        super().__init__("\n".join(lines))


@dataclass
class SyncReport:
    """What one `copy` did: files and bytes sent, skipped, kept and verified, and the manifest now published.

    `str()` is the one-line summary users see (CLI, magics and sidebar).
    """

    src: str
    dest: str
    files_sent: int = 0
    bytes_sent: int = 0
    files_skipped: int = 0
    bytes_skipped: int = 0
    files_kept: int = 0        # finished by an earlier, interrupted run, hashed and kept
    files_verified: int = 0
    bytes_verified: int = 0
    published: bool = False    # False when the destination already held this exact manifest
    seconds: float = 0.0
    send_seconds: float = 0.0  # of `seconds`, the sending (no connecting, planning or publishing)
    manifest: Manifest | None = field(default=None, repr=False)

    @property
    def mb_per_s(self) -> float:
        """Bytes sent per second, in MB (10^6), over the whole copy; 0 when nothing took time."""
        return self.bytes_sent / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.src} -> {self.dest}: sent {self.files_sent} files ({_mb(self.bytes_sent)}), "
                f"skipped {self.files_skipped} ({_mb(self.bytes_skipped)}), kept {self.files_kept}, "
                f"verified {self.files_verified} ({_mb(self.bytes_verified)}) in {self.seconds:.2f} s, "
                f"{self.mb_per_s:.1f} MB/s" + ("" if self.published else "; already up to date"))


def copy(src: str, dest: str, src_options: dict[str, Any] | None = None, dest_options: dict[str, Any] | None = None, *,
         labels: list[str] | None = None, parents: list[str] | None = None, run_id: str | None = None,
         site: str | None = None, meta: dict[str, Any] | None = None, deep: bool = False,
         require_published: bool = False, concurrency: int = CONCURRENCY, chunk_size: int = CHUNK,
         retries: int = 3, backoff: float = 0.5, progress: bool | None = None, config: Config | None = None) -> SyncReport:
    """Copy the checkpoint at `src` to `dest` and publish it there; return what moved.

    `src` is a published checkpoint (its manifest is trusted), a plain folder or a
    single file (hashed while it streams; `labels`, `parents`, `run_id`, `site` and
    `meta` then fill the new manifest). Files whose sha256 the destination's published
    manifest already lists are skipped without reading them; `deep=True` re-reads
    them at the destination and repairs any that differ. The residency guard sees the
    copy (with `config`, else the loaded one) before any byte moves.
    """
    started = time.monotonic()
    check_location("checkpoint source", src), check_location("checkpoint destination", dest)  # before fsspec parses them
    # retries=-1 ran no send round at all and published a manifest of files never sent
    check_options("sync.copy", concurrency=(concurrency, 1), chunk_size=(chunk_size, 1), retries=(retries, 0),
                  backoff=(backoff, 0))
    source = resolve(src, src_options)
    # the source is looked at while the destination connects (an SFTP server abroad: a second or more)
    early = ThreadPoolExecutor(max_workers=1)
    looked = early.submit(source_files, source, require_published)
    early.shutdown(wait=False)  # (its thread ends with that one look)
    target = resolve(dest, dest_options)
    source.max_connections = target.max_connections = (config or load_config()).sync.max_connections
    # what the guard's scan reads of a source elsewhere is kept here for the send (`residency.kept`);
    # the folder is made only if the scan keeps something
    spool = None if is_local(source.fs) else SpoolFolder(data_dir() / "spool")
    # the hashes the copy learns (its sources, its destination's files) recorded in one transaction at
    # its end, not a commit a file
    with verified.together():
        try:
            plan = make_plan(source, target, deep=deep, chunk=chunk_size, workers=concurrency,
                             require_published=require_published, looked=looked)
            start_connections(plan, plan.of(Action.SEND))  # they open while the guard judges the copy
            given = set(plan.source_manifest.labels if plan.source_manifest else []) | set(labels or [])
            carried = check_residency(plan, src, dest, given, config, spool)

            report = SyncReport(src=src, dest=dest)
            try:
                _send(plan, report, deep=deep, chunk=chunk_size, workers=concurrency, retries=retries, backoff=backoff,
                      progress=progress)
            finally:
                source.keep_width()
                target.keep_width()
            new = _new_manifest(plan, sorted(carried), parents, run_id, site, meta)
            try:
                report.published = _commit(plan, new)
            except PublishConflict as exc:
                raise SyncError(f"copy {src} -> {dest}: every file arrived, but {exc.strerror}.") from exc
            except OSError as exc:
                state = "it is unpublished now (no reader sees a partial checkpoint)" if plan.dest_manifest else "nothing was published"
                raise SyncError(
                    f"copy {src} -> {dest}: every file arrived and was verified, but publishing failed: "
                    f"{explain(exc, dest)}; {state}. Run the same copy again to finish: nothing is resent."
                ) from exc
        finally:
            source.close()  # the processes and sessions a copy keeps on SFTP servers
            target.close()
            if spool is not None:
                spool.close()
    report.manifest = new
    report.seconds = time.monotonic() - started
    tracking.checkpoint_copied(src, new)
    return report


def check_residency(plan: Plan, src_url: str, dest_url: str, labels: set[str], config: Config | None,
                    spool: SpoolFolder | None = None) -> set[str]:
    """The one place a copy asks the residency guard: after planning, before any byte moves.

    Every file the copy delivers is judged by what it is (its path, the file it resolves
    to, its content; see `residency.border`); a local file is pinned as judged, and the
    send reads it only while it is still that file. Raises `policy.ResidencyError` on a
    refusal (the guard writes the audit log); returns every label the copy carries, for
    the destination's manifest. A source elsewhere may keep what the scan read in `spool` (a
    folder here), for the send to read (`residency.kept`).
    """
    config = config or load_config()
    linked = plan.src.linked  # known for a listed local folder: which files a symlink leads to
    files = [SourceFile(item.rel if item.src_path != plan.src.root else "", item.src_path, item.size,
                        linked=None if linked is None or item.src_path == plan.src.root else item.rel in linked,
                        sent=item.action is Action.SEND)
             for item in plan.items]
    src = plan.src
    sizes = {item.src_path: item.size for item in plan.items}  # a big S3 object is read in ranges
    source = Source(url=src_url, local=is_local(src.fs), root=src.root,
                    open=lambda path: open_read(src, path, CHUNK, size=sizes.get(path), whole=False),
                    sha256=lambda paths: hash_many(src, {p: 0 for p in paths}, CHUNK, None), spool=spool)
    carried = set(policy.check_copy(src_url, dest_url, labels, plan.send_bytes, src_url, files=files,
                                    source=source, config=config))
    for item, judged in zip(plan.items, files):
        item.pin, item.data, item.spool, item.etag = judged.pin, judged.data, judged.spool, judged.etag
    return carried


def _send(plan: Plan, report: SyncReport, *, deep: bool, chunk: int, workers: int, retries: int, backoff: float,
          progress: bool | None) -> None:
    for item in plan.of(Action.SKIP):
        report.files_skipped += 1
        report.bytes_skipped += item.size
        if deep:  # re-read at the destination during planning
            report.files_verified += 1
            report.bytes_verified += item.size
    for item in plan.of(Action.KEEP_FINAL, Action.KEEP_STAGED):
        report.files_kept += 1
        report.files_verified += 1
        report.bytes_verified += item.size
    todo = plan.of(Action.SEND)
    if not todo:
        return
    started = time.monotonic()
    with Progress(total=plan.send_bytes, label=f"{plan.src.url} -> {plan.dest.url}", enabled=progress,
                  files=len(todo)) as bar:
        outcome = send_all(plan, todo, bar, chunk=chunk, workers=workers, retries=retries, backoff=backoff)
    report.send_seconds = time.monotonic() - started
    report.files_sent = len(outcome.sent)
    report.bytes_sent = sum(item.size - item.resume_from for item in outcome.sent)
    report.files_verified += len(outcome.verified)
    report.bytes_verified += sum(item.size for item in outcome.verified)
    if outcome.failed:
        state = "its published manifest is unchanged" if plan.dest_manifest else "nothing was published"
        raise SyncError(f"copy {plan.src.url} -> {plan.dest.url} failed; {state}.",
                        done=[item.rel for item in outcome.verified], failed=outcome.failed)


def _new_manifest(plan: Plan, labels: list[str], parents: list[str] | None, run_id: str | None,
                  site: str | None, meta: dict[str, Any] | None) -> Manifest:
    files = [FileEntry(item.rel, item.size, item.sha256 or "") for item in plan.items]
    source = plan.source_manifest
    if source is not None:
        # A replica of a published checkpoint: same identity and lineage, labels only ever added.
        return Manifest(files=files, created=source.created, run_id=source.run_id, site=source.site,
                        labels=labels, parents=list(source.parents), meta=dict(source.meta), version=source.version)
    new = Manifest(files=files, run_id=run_id, site=site, labels=labels, parents=list(parents or []), meta=dict(meta or {}))
    old = plan.dest_manifest
    if old is not None and _same(old, dataclasses.replace(new, created=old.created)):
        return old  # the same content again: keep its publication time, so a re-sync is a no-op
    return new


def _commit(plan: Plan, new: Manifest) -> bool:
    """Make the destination show `new`; False when it already did."""
    dest = plan.dest
    staged = plan.of(Action.KEEP_STAGED) + (plan.of(Action.SEND) if plan.stage else [])
    old = plan.dest_manifest
    if old is not None and not staged and not plan.removed and _same(old, new):
        _drop_staging(dest, [])
        if not is_object_store(dest.fs):
            drop_temp_manifests(dest.fs, dest.root, dest.stale_manifests)  # a run killed mid-publish left them
        return False
    if old is not None:
        # Unpublish first: a reader sees the old checkpoint, then none, then the new one.
        dest.fs.rm_file(manifest_path(dest.root))
    make_dirs(dest, [posixpath.dirname(dest.path(item.rel)) for item in staged])
    move_all(dest, [(plan.staged_path(item.rel), dest.path(item.rel)) for item in staged])
    for rel in plan.removed:
        if dest.fs.exists(dest.path(rel)):
            dest.fs.rm_file(dest.path(rel))
    publish(dest.fs, dest.root, new, dest.stale_manifests)
    # emptied now: the staged files' folders, and those the `.part`s of big files went through
    parts = (plan.temp_path(item) for item in plan.of(Action.SEND))
    _drop_staging(dest, sorted({posixpath.dirname(plan.staged_path(item.rel)) for item in staged}
                               | {posixpath.dirname(part) for part in parts if part}))
    return True


def _same(old: Manifest, new: Manifest) -> bool:
    def key(m: Manifest) -> Manifest:
        return dataclasses.replace(m, files=sorted(m.files, key=lambda e: e.path))

    return key(old) == key(new)


def _drop_staging(dest: Location, folders: list[str] | None = None) -> None:
    """Remove the staging tree; `folders` are the ones the copy emptied ([]: it put nothing there),
    None where not known."""
    if dest.staging_seen is False and folders == []:
        return  # not in the destination's listing, nor put there since: over a far link, two round trips saved
    if dest.sftp:
        sftp.remove_tree(dest.fs, dest.staging, empty=folders)
    elif dest.fs.exists(dest.staging):
        dest.fs.rm(dest.staging, recursive=True)
    if s3parts.supports(dest.fs):
        s3parts.abort_under(dest.fs, dest.root)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"

