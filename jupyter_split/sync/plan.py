"""Deciding, before any byte moves, what a copy must send and what it may keep.

Trust order: the destination's published manifest (skip on matching sha256, with
no content read), then finished files an interrupted copy left in staging or in
place (kept only after their bytes hash right), then everything else is sent.
"""
from __future__ import annotations

import posixpath
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

from ..errors import SplitError
from ..residency.pins import Pin
from .fsutil import Location, hash_many, list_tree
from .manifest import Manifest, check_paths, read_manifest
from .width import RANGED_MIN, RANGED_SLACK

PART_SUFFIX = ".part"
# Files this big are written as `<name>.part` and renamed when whole, so a killed copy
# can append to the part; smaller ones go straight to their staged name (a torn one
# fails the hash check every staged file gets before it is kept).
RESUMABLE_MIN = 16 << 20


class Action(str, Enum):
    """What the copy does with one file; only SEND moves bytes."""

    SKIP = "skip"            # the published destination already holds these bytes
    KEEP_FINAL = "keep"      # an unpublished file in place hashed right: keep it
    KEEP_STAGED = "staged"   # a finished staged file hashed right: move it in at commit
    SEND = "send"


@dataclass
class Item:
    """One file of the copy: where it comes from, what it should hash to, and what to do with it.

    `pin`, `data` and `spool` are filled by the residency guard: the send must read the same file it judged.
    """

    rel: str
    size: int
    sha256: str | None       # None until hashed when the source has no manifest
    src_path: str
    action: Action = Action.SEND
    resume_from: int = 0     # bytes of a `.part` file left by an interrupted copy
    checked: bool = False    # the backend confirmed the stored bytes as they arrived (S3 ETag)
    pin: Pin | None = None   # a local source file's identity as the residency guard judged it
    data: bytes | None = None  # a small file's bytes as the guard scanned them: sent as they are
    spool: str | None = None   # a bigger remote file's bytes as the guard scanned them, in a file here
    etag: str | None = None    # an S3 object's version as the guard scanned it: the send reads only that one


@dataclass
class Plan:
    """Everything a copy decided before sending: both locations, every file and its action, both manifests."""

    src: Location
    dest: Location
    items: list[Item]
    source_manifest: Manifest | None
    dest_manifest: Manifest | None
    stage: bool              # send into staging (True) or straight to the final names
    removed: list[str] = field(default_factory=list)  # published before, gone from the source

    def of(self, *actions: Action) -> list[Item]:
        """The items whose action is one of `actions`, in path order."""
        return [item for item in self.items if item.action in actions]

    @property
    def send_bytes(self) -> int:
        """The bytes still to send: what SEND items hold, less what their `.part` files already have."""
        return sum(item.size - item.resume_from for item in self.of(Action.SEND))

    def staged_path(self, rel: str) -> str:
        """Where `rel` is staged under the destination before the commit moves it in."""
        return posixpath.join(self.dest.staging, "files", rel)

    def write_path(self, rel: str) -> str:
        """Where a send writes `rel`: its staged path when the destination is published, else its final path."""
        return self.staged_path(rel) if self.stage else self.dest.path(rel)

    def temp_path(self, item: Item) -> str | None:
        """The `.part` name a big file is written under, so a killed copy can resume it.

        None when the file is written whole: a small one, or any on an object store.
        """
        # Object stores make a finished PUT visible at once and have no rename.
        if self.dest.object_store or item.size < RESUMABLE_MIN:
            return None
        return self.staged_path(item.rel) + PART_SUFFIX

    def parents(self, items: list[Item]) -> list[str]:
        """The folders the sends write into, to create once each rather than once per file."""
        paths = [self.write_path(item.rel) for item in items] + [p for p in map(self.temp_path, items) if p]
        return sorted({posixpath.dirname(path) for path in paths})


class PlanError(SplitError, ValueError):
    """The source cannot be copied as asked (missing, empty, unpublished when it must be)."""


def make_plan(src: Location, dest: Location, *, deep: bool, chunk: int, workers: int, require_published: bool,
              looked: Future | None = None) -> Plan:
    """Decide what a copy from `src` to `dest` sends, skips and keeps, before any byte moves.

    Skips trust the destination's published manifest (with `deep`, its files are read back
    too); leftovers of an interrupted copy are kept only when their bytes hash right. Raises
    PlanError for a missing or empty source, or an unpublished one with `require_published`.
    `looked`: `source_files` already under way (begun while the destination connected).
    """
    # the four lookups at once: on a far site each costs round trips of its own
    with ThreadPoolExecutor(max_workers=4) as pool:
        source = looked or pool.submit(source_files, src, require_published)
        found = [pool.submit(read_manifest, dest.fs, dest.root), pool.submit(list_tree, dest), pool.submit(_staged, dest)]
        source_manifest, files = source.result()
        check_paths(files, src.url)  # a name no manifest could hold is refused before any byte moves
        dest_manifest, in_place, staged = (future.result() for future in found)
    published = dest_manifest.by_path() if dest_manifest else {}
    # Only a published destination needs staging: readers trust only published manifests, so
    # a fresh one shows no checkpoint until the manifest lands, and its files are written in
    # place (no rename per file; a killed copy's finished files are kept as KEEP_FINAL).
    stage = dest_manifest is not None

    items: list[Item] = []
    src_hash: list[Item] = []
    dest_hash: list[tuple[Item, str]] = []
    for rel, (size, sha, path) in sorted(files.items()):
        item = Item(rel=rel, size=size, sha256=sha, src_path=path)
        items.append(item)
        entry = published.get(rel)
        if entry is not None and entry.size == size and in_place.get(rel) == size:
            item.action = Action.SKIP
            if deep:
                dest_hash.append((item, dest.path(rel)))
        elif staged.get(rel) == size:
            item.action = Action.KEEP_STAGED
            dest_hash.append((item, posixpath.join(dest.staging, "files", rel)))
        elif entry is None and in_place.get(rel) == size:
            item.action = Action.KEEP_FINAL
            dest_hash.append((item, dest.path(rel)))
        elif not dest.object_store and size >= RESUMABLE_MIN:
            part = staged.get(rel + PART_SUFFIX, 0)
            if dest.sftp and size >= RANGED_MIN:
                # written in pieces over several connections: a killed copy's part may have holes
                # in its last pieces (those in flight), never before them
                part = max(0, part - RANGED_SLACK)
            # a whole part (killed before its rename) is kept too: the sends check it like any other
            item.resume_from = part if 0 < part <= size else 0
        if item.action is not Action.SEND and item.sha256 is None:
            src_hash.append(item)

    stored = _hash_all(src, dest, src_hash, dest_hash, chunk, workers)
    for item in items:
        if item.action is Action.SEND:
            continue
        expected = item.sha256
        seen = stored.get(item.rel) if (item.action is not Action.SKIP or deep) else published[item.rel].sha256
        if seen != expected:
            item.action = Action.SEND
            item.resume_from = 0
    removed = sorted(set(published) - set(files))
    return Plan(src, dest, items, source_manifest, dest_manifest, stage, removed)


def source_files(src: Location, require_published: bool) -> tuple[Manifest | None, dict[str, tuple[int, str | None, str]]]:
    """The source's manifest (None for a plain folder or file) and rel -> (size, sha256 or None, path)
    for every file the copy must deliver. Its manifest is read first, then its files listed: on a
    far store each look costs a round trip, so what it is (missing, a file) is asked only when
    neither found anything."""
    fs = src.fs
    try:
        manifest = read_manifest(fs, src.root)
    except NotADirectoryError:  # a single file here
        manifest = None
    if manifest is not None:
        return manifest, {e.path: (e.size, e.sha256, src.path(e.path)) for e in manifest.files}
    sizes = {} if require_published else list_tree(src)
    if sizes:
        return None, {rel: (size, None, src.path(rel)) for rel, size in sizes.items()}
    if not fs.exists(src.root):
        raise PlanError(f"source {src.url} does not exist. Check the path (and the site's storage root).")
    if fs.isfile(src.root):
        if require_published:
            raise PlanError(f"source {src.url} is a single file, not a published checkpoint folder.")
        name = posixpath.basename(src.root)
        return None, {name: (int(fs.size(src.root)), None, src.root)}
    if require_published:
        raise PlanError(
            f"source {src.url} has no published manifest, so it is not a finished checkpoint. "
            "Wait for its writer to publish it, or copy the folder with sync.copy."
        )
    raise PlanError(f"source {src.url} holds no files: nothing to copy.")


def _staged(dest: Location) -> dict[str, int]:
    files = Location(url=dest.url, fs=dest.fs, root=posixpath.join(dest.staging, "files"))
    return list_tree(files)


def _hash_all(src: Location, dest: Location, src_items: list[Item], dest_items: list[tuple[Item, str]],
              chunk: int, workers: int) -> dict[str, str | None]:
    """Hash unknown source files (sets item.sha256) and candidate destination files: rel -> sha256."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = hash_many(src, {item.src_path: item.size for item in src_items}, chunk, pool)
        for item in src_items:
            item.sha256 = found[item.src_path]
        stored = hash_many(dest, {path: item.size for item, path in dest_items}, chunk, pool)
    return {item.rel: stored[path] for item, path in dest_items}
