"""What the engine does on an SFTP server itself rather than through sshfs's sync API.

Between two countries a round trip takes 50 to 200 ms, so every one counts:
- Big files are written on SFTP sessions of the copy's own (`sftp_files.py`). SSH gives a
  session a flow-control window (OpenSSH's is 2 MB), and a session carries at most a
  window per round trip: 33 MB/s at 60 ms however fast the link (rsync over ssh has
  the same ceiling). sshfs opens every file on its least busy session but counts it
  busy only while it opens, so files written at once share one.
- Listing, creating folders and renaming go all at once, not one after another, and
  a rename is SFTP's posix-rename: fsspec's sync `mv` on sshfs copies the file with a
  remote `cp` command and deletes the original.
- Folders from the copy's root down are asked for in one go on one session, which
  answers in order: a whole tree in one round trip (asyncssh's makedirs stats its way
  down from `/`); staging is removed the same way, and a tree is listed a level at a time.
"""
from __future__ import annotations

import asyncio
import errno
import posixpath
from typing import Any

from fsspec.asyn import sync

from . import sftp_errors
from .sftp_errors import call


def is_sshfs(fs: Any) -> bool:
    """An sshfs filesystem: these helpers lean on its connection (`client`) and session pool (`_pool`)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in ("ssh", "sftp") for p in protocols) and hasattr(fs, "client") and hasattr(fs, "_pool")


def find(fs: Any, root: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Every folder under `root` (itself first), and path -> info of every file under it: one round
    trip per level of folders. FileNotFoundError where `root` is not there."""
    folders, files = sync(fs.loop, _levels, fs, root)
    return [folder for level in folders for folder in level], files


def make_dirs(fs: Any, folders: list[str], base: str) -> None:
    """Create each folder and its missing parents, where `base`'s parent exists.

    Every folder from `base` down is asked for at once on one session, parents first:
    the server answers requests in order, so the whole tree costs one round trip. If
    that fails (the server reorders, or `base`'s parent is missing too) each folder is
    made from its deepest existing parent down.
    """
    sync(fs.loop, _make_dirs, fs, sorted(set(folders)), base.rstrip("/"))


async def _make_dirs(fs: Any, folders: list[str], base: str) -> None:
    chain: dict[str, None] = {}
    for folder in folders:
        parts, path = [], folder
        while path.startswith(base + "/") or path == base:
            parts.append(path)
            path = posixpath.dirname(path)
        chain.update(dict.fromkeys(reversed(parts or [folder])))
    async with fs._pool.get() as channel:
        results = await asyncio.gather(*(call(fs, "create the folder", path, channel.mkdir, path) for path in chain),
                                       return_exceptions=True)
    for result in results:
        if isinstance(result, PermissionError):
            raise result
        if isinstance(result, FileNotFoundError):
            await _gather([_make_dir(fs, folder) for folder in folders])
            return


async def read_file(fs: Any, path: str) -> bytes:
    """A whole file, on one of sshfs's pooled sessions (many at once pipeline there)."""
    async with fs._pool.get() as channel:
        return await call(fs, "read", path, _read_whole, channel, path)


async def write_file(fs: Any, path: str, data: bytes) -> None:
    """A whole file, written on one of sshfs's pooled sessions into an existing folder.

    sshfs's pipe_file first re-creates the parent folder, a round trip per file that
    nearly tripled the time for small files; a copy creates every folder once.
    """
    async with fs._pool.get() as channel:
        await call(fs, "write", path, _write_whole, channel, path, data, writes=True)


def rename_all(fs: Any, moves: list[tuple[str, str]]) -> None:
    """Rename each (old, new), replacing `new` atomically (posix-rename), all at once."""
    sync(fs.loop, _gather, [fs._mv(old, new) for old, new in moves])


def write_and_rename(fs: Any, temp: str, final: str, data: bytes) -> None:
    """Write `data` to `temp` and rename it over `final` in three round trips, not six: the open, then
    the write, fsync (where the server has it) and close sent together (a session answers in order),
    then the rename once all succeeded (a torn temp file is removed, never renamed). Makes the folder."""
    sync(fs.loop, _write_and_rename, fs, temp, final, data)


async def _write_and_rename(fs: Any, temp: str, final: str, data: bytes) -> None:
    from ..ssh.library import asyncssh

    async with fs._pool.get() as channel:
        # block_size 0: the write is one request, sent as its task starts, so the three go in order
        whole = 0 if len(data) <= channel.limits.max_write_len else -1
        open_temp = lambda: call(fs, "open (wb)", temp, channel.open, temp, "wb", block_size=whole, writes=True)  # noqa: E731
        try:
            handle = await open_temp()
        except FileNotFoundError:
            await fs._makedirs(posixpath.dirname(temp), exist_ok=True)
            handle = await open_temp()
        try:
            if whole:  # more than one request's worth: written first, in pieces
                await call(fs, "write", temp, handle.write, data, writes=True)
                data = b""
            written, synced, closed = await asyncio.gather(
                call(fs, "write", temp, handle.write, data, writes=True), handle.fsync(),
                call(fs, "write (close)", temp, handle.close, writes=True), return_exceptions=True)
            for result in (written, closed, synced):
                if isinstance(result, asyncssh.SFTPOpUnsupported):
                    continue  # no fsync on this server: the rename alone is what there is
                if isinstance(result, asyncssh.SFTPError):
                    raise await sftp_errors.explain(fs, result, "write (fsync)", temp, writes=True) from result
                if isinstance(result, BaseException):
                    raise result
            await call(fs, "rename", temp, fs._mv, temp, final, writes=True)
        except BaseException:
            await asyncio.gather(channel.remove(temp), return_exceptions=True)
            raise


async def _levels(fs: Any, root: str) -> tuple[list[list[str]], dict[str, dict[str, Any]]]:
    """The folders under `root` (itself first) by depth, and path -> info of every file."""
    folders: list[list[str]] = []
    files: dict[str, dict[str, Any]] = {}
    level = [root]
    while level:
        folders.append(level)
        listings = await _gather([fs._ls(folder, detail=True) for folder in level])
        level = []
        for listing in listings:
            for info in listing:
                if info["type"] == "directory":
                    level.append(info["name"])
                else:
                    files[info["name"]] = info
    return folders, files


async def _make_dir(fs: Any, path: str) -> None:
    # mkdir first: a new folder whose parent exists costs one round trip
    async with fs._pool.get() as channel:
        try:
            await call(fs, "create the folder", path, channel.mkdir, path)
            return
        except FileNotFoundError:
            pass  # its parent is missing too
        except OSError:
            if await call(fs, "stat", path, channel.isdir, path):  # it was there already
                return
            raise
    parent = posixpath.dirname(path)
    if parent == path:
        raise FileNotFoundError(errno.ENOENT, f"cannot create {path}")
    await _make_dir(fs, parent)
    await _make_dir(fs, path)


def remove_tree(fs: Any, root: str, empty: list[str] | None = None) -> None:
    """Delete `root` and everything under it, if it exists: a level of folders at a time.

    `empty`: folders under `root` believed to hold nothing else; they are removed without
    listing anything (listing one folder takes SFTP four round trips), and the tree is
    listed only if that fails.
    """
    sync(fs.loop, _remove_tree, fs, root, empty)


async def _remove_tree(fs: Any, root: str, empty: list[str] | None) -> None:
    if empty is not None:
        folders = {root}
        for folder in empty:
            while folder.startswith(root + "/") and folder not in folders:
                folders.add(folder)
                folder = posixpath.dirname(folder)
        deepest_first = sorted(folders, key=lambda f: f.count("/"), reverse=True)
        async with fs._pool.get() as channel:  # in order on one session: one round trip
            results = await asyncio.gather(*(call(fs, "remove the folder", f, channel.rmdir, f) for f in deepest_first),
                                           return_exceptions=True)
        if not any(isinstance(result, BaseException) for result in results):
            return
        # something else is in there (or the server reordered): list it all
    try:
        levels, files = await _levels(fs, root)
    except FileNotFoundError:
        return
    await _gather([fs._rm_file(path) for path in files])
    for level in reversed(levels):
        await _gather([_rmdir(fs, folder) for folder in level])


async def _rmdir(fs: Any, path: str) -> None:
    async with fs._pool.get() as channel:
        await call(fs, "remove the folder", path, channel.rmdir, path)


async def _gather(calls: list[Any], limit: int = 256) -> list[Any]:
    """Every call's result, at most `limit` at a time; the first failure raised after all end."""
    gate = asyncio.Semaphore(limit)

    async def one(pending: Any) -> Any:
        async with gate:
            return await pending

    results = await asyncio.gather(*(one(pending) for pending in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _read_whole(channel: Any, path: str) -> bytes:
    async with channel.open(path, "rb") as handle:
        return await handle.read()


async def _write_whole(channel: Any, path: str, data: bytes) -> None:
    async with channel.open(path, "wb") as handle:
        await handle.write(data)
