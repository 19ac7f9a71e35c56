"""The resident files by identity and by content: what lets a label follow the bytes.

A path glob labels `pii/people.csv`; it cannot label a hard link to it, a bind mount of
its folder, or a copy under another name. The index walks every local location the
policy's `resident` globs name and keeps each file's (device, inode) and size. A file
is then resident:
- by identity, when its (device, inode) is a resident file's: a hard link, a bind
  mount, a symlink, any path the kernel resolves to the same file;
- by content, when its size is a resident file's and its sha256 too: a copy.

Hashes are taken only where sizes collide, and remembered by `stat` in the record
store of `jupyter_split.verified` (a file whose device, inode, size, mtime and ctime
are unchanged is not read again), so keeping the index fresh costs a stat walk of the
resident folders, done again for every check: a resident file written a moment ago
counts at once. When that walk finds the resident files exactly as an earlier one did,
the earlier walk's fingerprints are taken as a whole (`print_trees`).
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import stat as stat_mod
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

from .. import verified
from ..config import Config
from .locations import Glob, compile_globs, components, scheme_of
from .busy import untracked
from .print_trees import KEPT_TREES, MEMO_ENTRIES, ROW, Tree, load_saved, process_state, save_entries, saved_rows, saved_tree
from .print_trees import SAVED_NAME, loaded as _loaded  # noqa: F401  (the saved file; cleared: as a new process)
from .print_trees import memo as _memo, tree_signature, trees, write_saved

CHUNK = 1 << 20


class Resident(tuple):
    """One resident file as the walk found it: (folder, name, glob, stat, slot), its slot the
    place of its fingerprint in the index's tree. A tuple, not an object with attributes: ten
    thousand are made per check, and a tuple costs least."""

    __slots__ = ()

    @property
    def path(self) -> str:
        return f"{self[0]}/{self[1]}" if self[1] else self[0]

    @property
    def glob(self) -> str:
        return self[2]

    @property
    def st(self) -> os.stat_result:
        return self[3]

    @property
    def slot(self) -> int:
        return self[4]


@dataclass(frozen=True)
class Match:
    """Why a file is resident: the original it is, or equals, and how that was found."""

    original: str
    how: str  # "same file" or "same content"
    glob: str

    def describe(self, what: str) -> str:
        """A sentence for a refusal: `what` is the resident file itself, or has its content."""
        if self.how == "same file":
            return (f"{what} is the resident file {self.original} itself (same device and inode: a hard link, "
                    f"a bind mount or a symlink of it; policy.resident {self.glob!r})")
        return f"{what} has the same content (sha256) as the resident file {self.original} (policy.resident {self.glob!r})"


class ResidentIndex:
    """Every local resident file, by (device, inode) and by size, with content hashes on demand."""

    def __init__(self, batches: Iterable[tuple[str, str, list[tuple[str, os.stat_result]]]]):
        """`batches`: (folder, glob, [(name, stat)]) as `walk_resident` gives them."""
        batches = list(batches)
        process_state()
        signature = tree_signature(batches)
        tree = trees.get(signature) if signature is not None else None
        if tree is None:  # not this process's last walk of these files: index them anew
            tree = Tree(signature, *_index(batches))
            if signature is not None:
                trees[signature] = tree
                while len(trees) > KEPT_TREES:
                    trees.pop(next(iter(trees)))
        self.tree = tree
        self.by_inode, self.by_size = tree.by_inode, tree.by_size
        self._prefetched: set[int] = set()
        # fingerprints taken in a write's racy window: good for this check, not kept in the tree
        self._untrusted: dict[bytes, Resident] = {}

    def __len__(self) -> int:
        return len(self.by_inode)

    def same_file(self, st: os.stat_result) -> Match | None:
        """The resident file `st` is (by device and inode), if any."""
        found = self.by_inode.get((st.st_dev, st.st_ino))
        return Match(found.path, "same file", found.glob) if found else None

    def sizes(self) -> frozenset[int]:
        """The sizes of non-empty resident files: only a file of one of them can have the same content."""
        return self.tree.sizes

    def same_content(self, size: int, digest: str | None) -> Match | None:
        """The resident file whose bytes equal a file of `size` bytes and sha256 `digest`, if any
        (the first in walk order, if several).

        Callers hash only files of a resident size (`sizes()`): most files have none.
        """
        if digest is None or size not in self.by_size:
            return None
        if size not in self._prefetched:
            self.prefetch((size,))
        try:
            raw = bytes.fromhex(digest)
        except (TypeError, ValueError):
            return None  # not a sha256: no resident file has it
        found = self.tree.find(raw)
        other = self._untrusted.get(raw)
        if other is not None and (found is None or other.slot < found[0]):
            found = (other.slot, other)
        return Match(found[1].path, "same content", found[1].glob) if found else None

    def prefetch(self, sizes: Iterable[int]) -> None:
        """Hash the resident files of these sizes now, their records read in a few queries: none
        at all when this walk is the last one (this process's, or the saved) and its tree is whole."""
        tree = self.tree
        with tree.lock:
            if not tree.adopted:  # first use of this walk's tree: the saved one, if it is this walk's
                tree.adopted = True
                saved = saved_tree()
                tree.taken = saved is not None and tree.take(saved)
            if not tree.unknown:
                return  # every fingerprint trusted as a whole: nothing to look at file by file
            todo = [size for size in set(sizes) if size in self.by_size and size not in self._prefetched]
            residents = [r for size in todo for r in self.by_size[size]]
            if tree.unknown < tree.nonempty:  # some are known (a partial prefetch before): not those
                residents = [r for r in residents if tree.digest(r.slot) is None]
            if residents:
                self._fill(tree, residents)
            self._prefetched.update(todo)

    def _fill(self, tree: Tree, residents: list[Resident]) -> None:
        """The fingerprints of these residents, none trusted in the tree yet: by the file-by-file
        rule (the saved tree's rows, this process's memo, the record store, the files), then saved."""
        found: list[tuple[int, bytes]] = []
        rows = tree.rows() if tree.signature is not None else b""  # no signature: a value ROW cannot pack
        if rows and not tree.taken:  # another walk's saved tree: the rows of it that stat still agrees with
            known = saved_rows()
            if known:
                rest, width = [], ROW.size
                for r in residents:  # a loop per resident file: r[4] is its slot
                    raw = known.get(rows[r[4] * width:(r[4] + 1) * width])
                    if raw is None:
                        rest.append(r)
                    else:
                        found.append((r[4], raw))
                residents = rest
        if residents:
            with without_gc():
                digests, trusted, _ = _sha256_many([(r.path, r.st) for r in residents])
            for resident, digest, kept in zip(residents, digests, trusted):
                if digest is not None:
                    if kept:
                        found.append((resident.slot, bytes.fromhex(digest)))
                    else:
                        self._untrusted.setdefault(bytes.fromhex(digest), resident)
        if not found:
            return
        tree.trust(found)
        if rows:
            write_saved(process_state(), tree.signature, rows, bytes(tree.digests), tree.unknown)
        else:  # a walk the signature cannot encode: its fingerprints saved file by file
            save_entries((r.st.st_dev, r.st.st_ino) for r in residents)


def _index(batches: list[tuple[str, str, list[tuple[str, os.stat_result]]]]) -> tuple[dict, dict]:
    """(by_inode, by_size) of a walk: a Resident per distinct file, its slot its place in walk order."""
    by_inode: dict[tuple[int, int], Resident] = {}
    by_size: dict[int, list[Resident]] = {}
    slot, first, same_size = 0, by_inode.setdefault, by_size.get  # locals: this loop runs per resident file
    for folder, glob, found in batches:
        for name, st in found:
            resident = Resident((folder, name, glob, st, slot))
            if first((st.st_dev, st.st_ino), resident) is not resident:
                continue  # a second path to the same file: one entry
            slot += 1
            size = st.st_size
            if size:  # an empty file holds no one's data, and every empty file is equal
                same = same_size(size)
                if same is None:
                    by_size[size] = [resident]
                else:
                    same.append(resident)
    return by_inode, by_size


def resident_index(config: Config) -> ResidentIndex:
    """The index of the local files the config's `policy.resident` globs name, walked now."""
    with untracked(), without_gc():  # the guard listing resident folders is not this process reading them
        return ResidentIndex(walk_resident(compile_globs(config.policy.resident)))


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """No cyclic garbage collection while tens of thousands of small objects are made, none
    of them in a cycle (the collector would run many times over, for nothing)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def walk_resident(globs: Iterable[Glob]) -> Iterator[tuple[str, str, list[tuple[str, os.stat_result]]]]:
    """Every local file a glob matches, a folder's at a time as (folder, glob, [(name, stat)]):
    the walk starts at the glob's literal head, as written."""
    for glob in globs:
        head, everything = _local_head(glob.text)
        if head is None:
            continue  # an object store's glob: labelled by its path only
        seen_dirs: set[tuple[int, int]] = set()
        for top in _case_variants(head):
            for folder, found in _walk(top, seen_dirs):
                if not everything:
                    found = [(name, st) for name, st in found
                             if glob.matches(("file", components(f"{folder}/{name}" if name else folder)), contains=False)]
                yield folder, glob.text, found


def _local_head(text: str) -> tuple[str | None, bool]:
    """The folder a local glob's matches all lie under, and whether it matches all below it."""
    scheme, rest = scheme_of(text.strip())
    if scheme != "file":
        return None, False
    path = os.path.expanduser(rest if rest == text.strip() else "/" + rest.lstrip("/"))
    if path.startswith("**"):
        return None, False  # matches anywhere: no folder to walk (such a glob labels by path)
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return "/" + "/".join(parts[:i]), all(p == "**" for p in parts[i:])
    return "/" + "/".join(parts), True


def _case_variants(path: str) -> list[str]:
    """`path` if it exists, else the existing paths that differ from it only by case
    (globs match regardless of case, so the walk must find `PII` for `pii`)."""
    if os.path.lexists(path):
        return [path]
    found = ["/"]
    for part in (p for p in path.split("/") if p):
        nxt: list[str] = []
        for base in found:
            candidate = os.path.join(base, part)
            if os.path.lexists(candidate):
                nxt.append(candidate)
                continue
            try:
                nxt += [e.path for e in os.scandir(base) if e.name.casefold() == part.casefold()]
            except OSError:
                pass
        found = nxt
        if not found:
            return []
    return found


def _walk(top: str, seen_dirs: set[tuple[int, int]]) -> Iterator[tuple[str, list[tuple[str, os.stat_result]]]]:
    """The files at or under `top`, a folder's at a time as (folder, [(name, stat)]), symlinks
    followed (each folder once, so a loop ends). A file given as `top` comes as (top, [("", stat)]).

    Each name is stat'ed relative to its open folder: the kernel resolves one name, not the
    whole path, and a folder renamed during the walk is still the one listed.
    """
    try:
        st = os.stat(top)
    except (OSError, ValueError):
        return
    if not stat_mod.S_ISDIR(st.st_mode):
        if stat_mod.S_ISREG(st.st_mode):
            yield top, [("", st)]
        return
    is_dir, is_reg, stat = stat_mod.S_ISDIR, stat_mod.S_ISREG, os.stat
    pending = [top.rstrip("/") or "/"]
    while pending:
        folder = pending.pop()
        try:
            fd = os.open(folder, _FOLDER_FLAGS)
        except OSError:
            continue
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) in seen_dirs:
                continue
            seen_dirs.add((fst.st_dev, fst.st_ino))
            names = os.listdir(fd)
            files = []
            prefix = folder if folder != "/" else ""
            for name in names:
                try:
                    est = stat(name, dir_fd=fd)  # follows symlinks: a link in a resident folder points at resident data
                except OSError:
                    continue
                if is_dir(est.st_mode):
                    pending.append(f"{prefix}/{name}")
                elif is_reg(est.st_mode):
                    files.append((name, est))
        except OSError:
            continue
        finally:
            os.close(fd)
        yield prefix, files  # "" for the root folder: its files' paths are "/name"


_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def sha256_many(files: list[tuple[str, os.stat_result]], *, keep: bool = False) -> list[str | None]:
    """`local_sha256` of many (path, stat) pairs: this process's memo, then the record store
    (looked up together), then the files themselves. `keep`: these are the resident files,
    whose fingerprints are saved for the next process."""
    if keep:
        load_saved()
    with verified.together():  # what it hashes, recorded in one transaction
        found, _, missed = _sha256_many(files)
    if keep and missed:
        save_entries((st.st_dev, st.st_ino) for _, st in files)
    return found


def _sha256_many(files: list[tuple[str, os.stat_result]]) -> tuple[list[str | None], list[bool], int]:
    """`sha256_many`, whether each digest may be kept (from the memo or the record store, or
    recorded there now: not a file hashed within a write's racy window, nor one unread), and
    how many the memo did not answer."""
    found: list[str | None] = []
    trusted: list[bool] = []
    missing: list[int] = []
    for i, (_, st) in enumerate(files):
        hit = _memo.get((st.st_dev, st.st_ino))
        fresh = hit is not None and hit[:3] == (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        found.append(hit[3] if fresh else None)
        trusted.append(fresh)
        if not fresh:
            missing.append(i)
    known = verified.known_many([files[i][1] for i in missing]) if missing else []
    for i, sha in zip(missing, known):
        path, st = files[i]
        if sha is None:
            found[i] = local_sha256(path, st)
            # remembered only where the record store took it: not within a write's racy window
            sha = verified.known_sha256(st) if found[i] is not None else None
        else:
            found[i] = sha
        if sha is not None:
            trusted[i] = sha == found[i]
            if len(_memo) >= MEMO_ENTRIES:
                _memo.clear()
            _memo[(st.st_dev, st.st_ino)] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha)
    return found, trusted, len(missing)


def local_sha256(path: str | int, st: os.stat_result | None = None) -> str | None:
    """sha256 of a local file (a path or an open descriptor), from the record store when `stat`
    says it is unchanged since it was hashed; None if it cannot be read."""
    try:
        st = st or os.stat(path)
        known = verified.known_sha256(st)
        if known is not None:
            return known
        stat_ns = time.time_ns()
        digest = hashlib.sha256()
        with untracked():  # a hash is all that is kept: the bytes read here taint nothing
            fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            offset = 0
            while data := os.pread(fd, CHUNK, offset):
                digest.update(data)
                offset += len(data)
        finally:
            if not isinstance(path, int):
                os.close(fd)
    except (OSError, ValueError):
        return None
    sha = digest.hexdigest()
    after = os.stat(path) if not isinstance(path, int) else os.fstat(path)
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
        verified.remember(st, stat_ns, sha)
    return sha
