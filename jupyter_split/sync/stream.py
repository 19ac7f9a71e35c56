"""Moving files: each streamed source to destination in chunks, hashed on the way (one
read); small ones read whole and written in batches."""
from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
import time
from typing import Any, Callable, Iterator

from fsspec.asyn import sync

from ..errors import SplitError
from . import ranges, s3parts, s3read, sftp, width
from .fsutil import is_permanent, move_all, open_read
from .manifest import is_local
from .plan import Item, Plan


class VerifyError(SplitError, OSError):
    """The bytes stored at the destination (or read at the source) are not the expected ones."""


def send_with_retries(plan: Plan, item: Item, *, chunk: int, retries: int, backoff: float,
                      on_bytes: Callable[[int], None], on_read: Callable[[], None] = lambda: None) -> None:
    """Send `item`; retry transient failures with backoff, then raise. `on_read`: see `send_file`."""
    attempt = 0
    while True:
        sent = 0
        start = item.resume_from

        def count(n: int) -> None:
            nonlocal sent
            sent += n
            on_bytes(n)

        try:
            send_file(plan, item, chunk=chunk, on_bytes=count, on_read=on_read)
            return
        except Exception as exc:
            if isinstance(exc, VerifyError):
                item.resume_from = 0  # the source changed under the copy: its part is stale
            # the bar shows bytes that made it, not bytes tried: a `.part`'s confirmed bytes stay
            on_bytes(-(sent - max(0, item.resume_from - start)))
            if is_permanent(exc) or attempt >= retries:
                # a `.part` stays for the next run to resume, unless the disk is full or read-only
                _drop_torn(plan, item, keep_part=not is_permanent(exc))
                raise
            attempt += 1
            time.sleep(backoff * 2 ** (attempt - 1))
            # a dropped link killed every connection: reconnect, then resume where the server confirmed
            for side in (plan.src, plan.dest):
                side.revive()


def send_small(plan: Plan, items: list[Item], *, chunk: int, retries: int, backoff: float,
               on_bytes: Callable[[int], None]) -> list[tuple[Item, BaseException | None]]:
    """A batch of small files: read them all, then write them all.

    To an SFTP server with python3 they go in one stream to the process the copy keeps
    there; to another async filesystem on its event loop (one thread per file would pay
    a thread-to-loop hop for every open, write and close; this pays one per batch). A
    file that fails here goes through `send_with_retries`.
    """
    loaded: list[tuple[Item, bytes]] = []
    again: list[Item] = []
    md5s: dict[str, str] = {}  # to S3: each body's MD5, sent as Content-MD5 and compared with the ETag
    for item, data in zip(items, _read_whole(plan.src, items, chunk)):
        try:
            if isinstance(data, BaseException):
                raise data
            _check(item.src_path, item, len(data), hashlib.sha256(data).hexdigest(), whole=True)
            loaded.append((item, data))
            if s3parts.supports(plan.dest.fs):  # in this thread, as the sha256: not on the event loop's
                md5s[plan.write_path(item.rel)] = hashlib.md5(data, usedforsecurity=False).hexdigest()
        except Exception:
            again.append(item)
    results: list[tuple[Item, BaseException | None]] = []
    worker = plan.dest.worker
    if worker is not None and worker.writes:
        # one stream to the process kept on the SFTP server, which writes each file and
        # hashes it as stored: no open, write and close round trips per file
        stored = worker.put([(plan.write_path(item.rel), data) for item, data in loaded])
        for item, data in loaded:
            if stored.get(plan.write_path(item.rel)) == item.sha256:
                item.checked = True
                on_bytes(len(data))
                results.append((item, None))
            else:
                again.append(item)
        loaded = []
    replies = _write_whole(plan.dest.fs, [(plan.write_path(item.rel), data) for item, data in loaded], md5s)
    for (item, data), reply in zip(loaded, replies):
        if isinstance(reply, BaseException):
            again.append(item)
            continue
        on_bytes(len(data))
        # S3 answers a PUT with the MD5 of what it stored: a match verifies it without a read-back
        etag = reply.get("ETag", "").strip('"') if isinstance(reply, dict) else ""
        item.checked = bool(etag) and etag == md5s.get(plan.write_path(item.rel))
        results.append((item, None))
    for item in again:
        try:
            send_with_retries(plan, item, chunk=chunk, retries=retries, backoff=backoff, on_bytes=on_bytes)
            results.append((item, None))
        except Exception as exc:
            results.append((item, exc))
    return results


def _read_whole(src, items: list[Item], chunk: int) -> list[bytes | BaseException]:
    """Each item's bytes, or the exception reading it raised.

    From a remote store they are read all at once: from an SFTP server, sent in one stream
    by the process the copy keeps there, else with their requests pipelined on a session
    (one after the other, each file costs an open, a read and a close round trip).
    """
    if not items:
        return []
    kept = [item.data for item in items]  # read (and scanned) by the residency guard: sent as they are
    for item in items:
        item.data = None
    if any(data is not None for data in kept):
        rest = iter(_read_whole(src, [item for item, data in zip(items, kept) if data is None], chunk))
        return [data if data is not None else next(rest) for data in kept]
    worker = src.worker
    if worker is not None and worker.writes:
        # the process kept on the SFTP server sends them back in one stream
        got = worker.get([item.src_path for item in items])
        if got:  # nothing back: the process is gone, so read them over SFTP below
            return [got[item.src_path] if item.src_path in got else OSError(f"{item.src_path}: not sent by the server process")
                    for item in items]
    if src.fs.async_impl:
        # one GET a file: s3fs asks an object's size first (a HEAD) where it may split the read
        options = {"max_concurrency": 1} if s3read.supports(src.fs) else {}

        async def gather() -> list[Any]:
            reads = (sftp.read_file(src.fs, item.src_path) if src.sftp else src.fs._cat_file(item.src_path, **options)
                     for item in items)
            return await asyncio.gather(*reads, return_exceptions=True)

        return sync(src.fs.loop, gather)
    found: list[bytes | BaseException] = []
    for item in items:
        try:
            with open_read(src, item.src_path, chunk, item.pin, item.size) as reader:
                found.append(reader.read(item.size + 1))
        except Exception as exc:
            found.append(exc)
    return found


def _write_whole(fs, pairs: list[tuple[str, bytes]], md5s: dict[str, str]) -> list[Any]:
    """Each write's reply (S3: the PUT response), or the exception it raised; a path in `md5s` goes
    with its body's MD5 (hex) as Content-MD5."""
    if not pairs:
        return []
    if fs.async_impl:
        return sync(fs.loop, _pipe_all, fs, pairs, md5s)
    replies: list[Any] = []
    for path, data in pairs:
        try:
            if is_local(fs):  # fsspec's local file object costs more than a small write
                with open(path, "wb") as handle:
                    replies.append(handle.write(data))
            else:
                replies.append(fs.pipe_file(path, data))
        except Exception as exc:
            replies.append(exc)
    return replies


async def _pipe_all(fs, pairs: list[tuple[str, bytes]], md5s: dict[str, str]) -> list[Any]:
    # (a body under s3fs's 100 MiB goes as one PUT, whose Content-MD5 the store checks on receipt;
    # the copy sends only files under s3parts.MULTIPART_MIN this way)
    writes = (sftp.write_file(fs, path, data) if sftp.is_sshfs(fs)
              else fs._pipe_file(path, data, **s3parts.content_md5(md5s[path])) if path in md5s
              else fs._pipe_file(path, data) for path, data in pairs)
    return await asyncio.gather(*writes, return_exceptions=True)


def send_file(plan: Plan, item: Item, *, chunk: int, on_bytes: Callable[[int], None],
              on_read: Callable[[], None] = lambda: None) -> None:
    """Stream one file from the source to the destination, hashed as it is read; resumes a `.part` left before.
    `on_read` is called once the source is read to its end, while the destination may still be taking it.

    Raises VerifyError when the bytes read are not the size or sha256 the plan expects (the
    source changed), and whatever the destination raised; the caller retries.
    """
    src, dest = plan.src, plan.dest
    final = plan.write_path(item.rel)
    temp = plan.temp_path(item)
    target = temp or final
    digest = hashlib.sha256()
    # a pull's `.part` is on this machine: with the sha256 known (the final check then covers
    # the join) its hash is rebuilt from there, not from its bytes again over the link
    local_part = bool(item.resume_from and temp and is_local(dest.fs) and item.sha256 and _wide(src, item, chunk))
    with _open_source(src, item, chunk, item.resume_from if local_part else 0) as reader:
        if dest.object_store and item.size >= s3parts.MULTIPART_MIN and s3parts.supports(dest.fs):
            offset, item.resume_from, item.checked = s3parts.send(dest.fs, final, reader, digest, on_bytes)
            _check(item.src_path, item, offset, digest.hexdigest(), whole=True)
            return
        if local_part:
            with open(target, "rb") as part:
                offset = _resume(part, item, digest, chunk)
        else:
            offset = _resume(reader, item, digest, chunk)
        writer = _open_writer(dest, target, offset, chunk)
        ahead = ReadAhead(reader, chunk, digest) if item.size - offset > chunk else ReadInline(reader, chunk, digest)
        try:
            try:
                for data in ahead:
                    writer.write(data)
                    offset += len(data)
                    on_bytes(len(data))
            finally:
                ahead.close()
            on_read()
            writer.close()
        except BaseException:
            _discard(writer, dest.object_store)
            # a `.part` keeps what the server confirmed (on this machine: what was written, now
            # flushed): the retry resumes there, not from 0
            item.resume_from = (offset if is_local(dest.fs) else getattr(writer, "acked", 0)) if temp is not None else 0
            raise
    _check(item.src_path, item, offset, digest.hexdigest(), whole=not local_part)
    if temp is not None:
        move_all(dest, [(temp, final)])


def _wide(src, item: Item, chunk: int) -> bool:
    """Whether `item` is read from an SFTP server in ranges over the copy's connections."""
    return src.streams is not None and item.size > min(chunk, width.PIECE)


def _open_source(src, item: Item, chunk: int, offset: int) -> Any:
    """The reader of `item` from `offset`: the bytes the guard's scan read where it kept them (a file
    here), else in ranges over several connections from an SFTP server (a big file must not ride one
    flow), else `open_read`'s (`offset` is then 0)."""
    if item.spool is not None:
        return open(item.spool, "rb")
    if _wide(src, item, chunk):
        first = src.streams.open(item.src_path, read=True)
        if first is not None:
            return ranges.RangedReader(src.streams, item.src_path, offset, item.size, first)
    return open_read(src, item.src_path, chunk, item.pin, item.size, item.etag)


def _open_writer(dest, target: str, offset: int, chunk: int) -> Any:
    writer = dest.streams.open(target, offset) if dest.streams is not None else None
    if writer is not None:
        writer = ranges.RangedWriter(dest.streams, target, offset, writer)  # over several connections
    elif is_local(dest.fs):
        # the part from `offset` on: whatever a killed copy wrote past it is replaced
        writer = open(target, "r+b" if offset else "wb")
        writer.seek(offset)
        writer.truncate()
    else:
        mode = "ab" if offset else "wb"
        writer = dest.fs.open(target, mode, block_size=chunk) if dest.object_store else dest.fs.open(target, mode)
    return writer


class ReadAhead:
    """The source read and hashed on its own thread, up to `depth` chunks ahead of the writer.

    Reading a chunk and writing it one after the other adds the two legs' times; over
    two links (S3 abroad to SFTP at home) each then idles half the time.
    """

    def __init__(self, reader: Any, chunk: int, digest: Any, depth: int = 2):
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(reader, chunk, digest), daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self._queue.get()
            if isinstance(data, BaseException):
                raise data
            if not data:
                return
            yield data

    def close(self) -> None:
        """Stop the reading thread and wait for it; call it even when the writer failed."""
        self._stop.set()
        self._thread.join()

    def _run(self, reader: Any, chunk: int, digest: Any) -> None:
        # a reader that can hand over what it has (`read1`, as io's buffered readers) does: a chunk of a
        # far source takes seconds to arrive whole, and the writer's link would wait for it meanwhile
        read = getattr(reader, "read1", reader.read)
        try:
            while not self._stop.is_set():
                data = read(chunk)
                digest.update(data)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:
            self._put(exc)

    def _put(self, data: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(data, timeout=0.1)
                return
            except queue.Full:
                continue


class ReadInline:
    """A file of one chunk or less, read and hashed in the writer's thread (a thread costs more)."""

    def __init__(self, reader: Any, chunk: int, digest: Any):
        self._reader, self._chunk, self._digest = reader, chunk, digest

    def __iter__(self) -> Iterator[bytes]:
        while data := self._reader.read(self._chunk):
            self._digest.update(data)
            yield data

    def close(self) -> None:
        """Nothing to stop; here so both readers are used the same way."""
        pass


def _check(source: str, item: Item, nbytes: int, sha: str, whole: bool = False) -> None:
    """The bytes read must be the ones the plan expected; then `item.sha256` is known. With `whole`
    (`sha` is of every byte of the source, none from a `.part` here) a local file read under its pin
    has its hash recorded, so that a re-sync does not read it again."""
    if nbytes != item.size or (item.sha256 is not None and sha != item.sha256):
        raise VerifyError(
            f"source {source} changed while it was read (or does not match its manifest): "
            f"expected {item.size} bytes sha256 {item.sha256}, read {nbytes} bytes sha256 {sha}"
        )
    item.sha256 = sha
    if whole and item.pin is not None:
        item.pin.remember(sha)


def _resume(reader, item: Item, digest, chunk: int) -> int:
    # An interrupted `.part` keeps its bytes: rebuild the hash state from the source's
    # copy of them (a local read, nothing sent); the final verification checks the join.
    remaining = item.resume_from
    while remaining:
        data = reader.read(min(chunk, remaining))
        if not data:
            raise VerifyError(f"source {item.src_path} is shorter than the part already sent")
        digest.update(data)
        remaining -= len(data)
    return item.resume_from


def _discard(writer, object_store: bool) -> None:
    # A buffered object-store writer would otherwise publish the truncated object on close.
    try:
        if object_store:
            writer.discard()
        writer.close()
    except Exception:
        pass  # the original error is the one to report


def _drop_torn(plan: Plan, item: Item, keep_part: bool) -> None:
    temp = plan.temp_path(item)
    if temp is not None and keep_part:
        return
    try:
        plan.dest.fs.rm_file(temp or plan.write_path(item.rel))
    except OSError:
        pass  # nothing was written, or the destination is unreachable: the staging cleanup at commit covers it
