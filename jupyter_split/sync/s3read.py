"""Reading an S3 object as one streamed GET, or a big one as ranged GETs on several connections.

s3fs's file object sends a ranged GET for every block it reads; a whole checkpoint
shard read that way costs one request per block. `S3Stream` reads the object's body as
it arrives, in the caller's chunks, from a single request. But one request rides one
connection, and a long lossy link gives one flow only its share: `S3Ranges` asks for a
big object of a store not known to be near (`near`) in ranges, AHEAD of them at once (each
on its own connection of botocore's pool), and hands the bytes back in order, for the copy's
one sequential hash. Both can pass over bytes a reader does not need (`skip`: the border's scan
of a safetensors file reads its header and skips its weights) without downloading them.

Both read one version of the object: given its ETag (the version the residency guard judged),
every GET asks for it (`If-Match`); else every answer must carry the first one's. An object
replaced meanwhile ends the read (`Replaced`) instead of handing back bytes of two versions, or
of one the border never judged.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
import weakref
from typing import Any

from fsspec.asyn import sync

from ..residency.pins import PinError
from .arrived import Arrived, Range


class Replaced(PinError):
    """The object is no longer the version read before (or the one the residency guard judged)."""


def _replaced(where: str, exc: BaseException) -> BaseException:
    # s3fs turns a 412 (If-Match not met) into an OSError of EINVAL, as it does a 416
    text = str(exc).lower().replace("-", "").replace(" ", "")  # ("At least one of the pre-conditions ...")
    if "precondition" in text or "412" in text:
        return Replaced(f"{where} was replaced after the residency guard judged it (its ETag changed): nothing "
                        "more of it was read. Run the copy again once nothing writes the source.")
    return exc


def supports(fs: Any) -> bool:
    """Whether `fs` is s3fs (or acts like it), so an object can be read as one streamed GET."""
    return hasattr(fs, "_call_s3") and hasattr(fs, "split_path")


class S3Stream:
    """An S3 object's body as a binary stream from one GET; raises FileNotFoundError when there is
    none, and `Replaced` when `etag` is given and the object has another now. `etag`: the one read."""

    def __init__(self, fs: Any, path: str, etag: str | None = None):
        bucket, key, version = fs.split_path(path)
        extra = {"VersionId": version} if version else {}
        if etag:
            extra["IfMatch"] = etag
        self._loop = fs.loop
        asked = time.monotonic()
        try:
            answer = sync(fs.loop, fs._call_s3, "get_object", Bucket=bucket, Key=key, **extra)
        except FileNotFoundError:
            raise FileNotFoundError(f"s3://{bucket}/{key} does not exist") from None
        except OSError as exc:
            raise _replaced(f"s3://{bucket}/{key}", exc) from None
        _answered(_store(fs, bucket), time.monotonic() - asked)
        self._body, self.etag = answer["Body"], answer.get("ETag") or etag
        self._left = answer.get("ContentLength")

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the body; b"" at its end."""
        data = sync(self._loop, self._body.read, size)
        if self._left is not None:
            self._left -= len(data)
        return data

    def skip(self, size: int) -> None:
        """Pass over `size` bytes: to the body's end by closing it (the rest is not read), else read."""
        if self._left is not None and size >= self._left:
            self._body.close()
            self._left = 0
            self._body = _Ended()
            return
        while size > 0:
            data = self.read(min(size, RANGE))
            if not data:
                return
            size -= len(data)

    def close(self) -> None:
        """Close the body, giving back its connection."""
        self._body.close()

    def __enter__(self) -> "S3Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Ended:
    """The body of a stream passed over to its end."""

    async def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


# Bytes a ranged GET asks for, at most. The reader takes the ranges in order, so while the first
# one in line is still coming it gets that one flow's share: ranges of 4 MiB at a far link's share
# held every object at one flow's pace for seconds at once, the same seconds for objects begun
# together (the SFTP side of a copy through border x 0.25 fell to 5 MB/s of 12.5 every few
# seconds); ranges of 2 MiB end within about as long as the link takes to bring a range per object.
RANGE = 2 << 20
# For a reader that may need only the object's head (the residency guard's scan of a safetensors
# file, which then skips the weights) the first GET asks for this much, alone, and each after it
# for twice the one before, up to RANGE: it gets little it does not read, and if it reads on it
# soon has AHEAD ranges of RANGE in flight.
FIRST_RANGE = 64 << 10
# Ranges asked for at once share the link alike and would end together, while the reader takes
# them in order: from equal ranges it would get only the first one's share until then (a quarter
# of the object's, the rest at once seconds later). Growing from START_RANGE, they end in order.
START_RANGE = 512 << 10
AHEAD = 4        # ranged GETs of one object in flight at once (as many multipart parts go up at once)
CHUNK = 256 << 10  # a ranged GET's body is handed on in reads of at most this
RANGED_MIN = AHEAD * RANGE // 2  # objects over this are read in ranges
# A store that answered a GET this soon is near (this machine, its region): no long link whose
# flows to fill, so a big object is one streamed GET, as a small one (`open_read`); each GET costs
# the store a request, a ranged one most (moto_server reads the whole object for it).
NEAR_S = 0.03
_ANSWERED: dict[tuple[str, str], float] = {}  # (endpoint, bucket): its quickest answer yet


def _store(fs: Any, bucket: str) -> tuple[str, str]:
    """Where a bucket is: its endpoint (None: the provider's own) and its name."""
    return str(getattr(fs, "endpoint_url", None) or (getattr(fs, "client_kwargs", None) or {}).get("endpoint_url")), bucket


def _answered(store: tuple[str, str], seconds: float) -> None:
    _ANSWERED[store] = min(seconds, _ANSWERED.get(store, seconds))


def near(fs: Any, path: str) -> bool:
    """Whether the store of `path` answered a GET within NEAR_S (False while none has answered)."""
    return _ANSWERED.get(_store(fs, fs.split_path(path)[0]), NEAR_S) < NEAR_S


class _Reading:
    """The objects being read in ranges, oldest first: the oldest get more ranges in flight.

    Objects read at once at one pace end together, and the copy then reads the next ones from
    their first ranges, all at once again (ranges that start together end together: the reader
    gets only the first one's share until then); the link carried 0.75 of its cap so. The oldest
    ending first, the reads end one by one instead, and so do the next ones' starts.
    """

    def __init__(self) -> None:
        # weak: a reader dropped unclosed (a failed send) must not hold a place for ever
        self._order: list[weakref.ref[S3Ranges]] = []
        self._lock = threading.Lock()

    def join(self, reader: S3Ranges) -> None:
        with self._lock:
            self._order.append(weakref.ref(reader))

    def leave(self, reader: S3Ranges) -> None:
        with self._lock:
            self._order = [ref for ref in self._order if ref() not in (None, reader)]

    def ahead(self, reader: S3Ranges) -> int:
        """Ranges `reader` may have in flight: AHEAD for the two oldest, one fewer for each two after
        them, two at least."""
        with self._lock:
            live = [other for other in (ref() for ref in self._order) if other is not None]
        rank = live.index(reader) if reader in live else 0
        return max(2, AHEAD - rank // 2)


_READING = _Reading()


class S3Ranges:
    """The object's `size` bytes and one past, read in ranges AHEAD at once, in order.

    The one byte past `size` is asked for too: an object that grew since it was listed reads
    longer than its size, which the copy's size check refuses (a shrunk one reads short).
    `etag`: the version to read (else the first answer's), and after the first answer the one read.
    `head_first`: a reader that may need only the head (FIRST_RANGE, then ranges that grow as it reads
    on); else AHEAD ranges from the start, growing from START_RANGE to RANGE. Each range's bytes are
    handed on as they arrive.
    """

    def __init__(self, fs: Any, path: str, size: int, etag: str | None = None, head_first: bool = False):
        self._fs, self._loop = fs, fs.loop
        bucket, key, version = fs.split_path(path)
        self._where = f"s3://{bucket}/{key}"
        self._ask = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
        self.etag = etag
        self._next, self._end, self._range = 0, size + 1, FIRST_RANGE if head_first else START_RANGE
        self._store = _store(fs, bucket)
        self._flight: collections.deque[Range] = collections.deque()
        self._cond = threading.Condition()  # (reentrant: `_split` runs while `take` waits)
        self._held, self._done = Arrived(), False
        if not head_first:
            _READING.join(self)
        self._fill(1 if head_first else AHEAD)

    def _fill(self, most: int = AHEAD) -> None:
        most = min(most, _READING.ahead(self))
        while len(self._flight) < most and self._next < self._end:
            # the object's last bytes spread over the ranges it may still ask for: its end does not
            # ride one flow (4 MiB at a border flow's share: seconds at the end of a copy)
            size = min(self._range, max(START_RANGE, -(-(self._end - self._next) // (most - len(self._flight)))))
            piece = Range(self._next, min(self._next + size, self._end) - 1, self._cond)
            self._range = min(2 * self._range, RANGE)
            piece.future = asyncio.run_coroutine_threadsafe(self._fetch(piece), self._loop)
            self._flight.append(piece)
            self._next = piece.last + 1
        if self._next >= self._end:
            _READING.leave(self)  # all asked for: its place goes to the objects read after it
            self._split(most)

    def _split(self, most: int) -> None:
        # all asked for, and fewer than `most` ranges still coming: the one with the most still to come
        # gives half of it to a new GET. The object's end comes over `most` flows to the last, not
        # over the one or two that carry its last ranges (seconds at a border flow's share, at the end
        # of a copy, while the flows of the ranges that ended idle)
        with self._cond:
            while True:
                coming = [(at, piece) for at, piece in enumerate(self._flight) if piece.coming]
                if not coming or len(coming) >= most:
                    return
                at, piece = max(coming, key=lambda p: p[1].left)
                rest = piece.cut()
                if rest is None:
                    return
                rest.future = asyncio.run_coroutine_threadsafe(self._fetch(rest), self._loop)
                self._flight.insert(at + 1, rest)

    def _waiting(self) -> None:
        if self._next >= self._end:  # (all asked for: out of the ranks, so AHEAD)
            self._split(AHEAD)

    async def _fetch(self, piece: Range) -> None:
        try:
            await self._get(piece)
        except asyncio.CancelledError as exc:  # by close: no reader waits for it
            piece.end(exc)
            raise
        except Exception as exc:  # the reader raises it, in its turn
            piece.end(exc)
        else:
            piece.end()

    async def _get(self, piece: Range) -> None:
        ask = {**self._ask, **({"IfMatch": self.etag} if self.etag else {})}
        asked = time.monotonic()
        try:
            answer = await self._fs._call_s3("get_object", Range=f"bytes={piece.first}-{piece.last}", **ask)
            _answered(self._store, time.monotonic() - asked)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self._where} does not exist") from None
        except OSError as exc:
            if "range is not satisfiable" in str(exc).lower() or "InvalidRange" in str(exc):
                return  # the object is shorter now: the copy's size check says so
            raise _replaced(self._where, exc) from None
        body, tag = answer["Body"], answer.get("ETag")
        total = answer.get("ContentRange", "").rpartition("/")[2]
        if total.isdigit() and int(total) < self._end:
            # the object's length, of this very version: nothing past it to ask for (one longer
            # than listed is still asked one byte past the listed size, which the size check refuses)
            self._end = int(total)
        if self.etag is None:
            self.etag = tag
        elif tag and tag != self.etag:  # (asked before the first answer came, so without If-Match)
            body.close()
            raise _replaced(self._where, OSError("412 Precondition Failed"))
        try:
            while (data := await body.read(CHUNK)) and piece.put(data):
                pass
        finally:
            body.close()  # (before its end, where the range was cut: its connection is dropped)
        if piece.first + piece.got <= min(piece.last, self._end - 1):  # (not the object's end: a gap)
            raise OSError(f"{self._where}: a ranged GET ended after {piece.got} bytes of "
                          f"{piece.last + 1 - piece.first}")

    def _arrived(self) -> bytes:
        """The next bytes of the range first in line, as they come (b"" where it ended short: nothing
        after it counts); a range that ended gives way to the next, AHEAD kept in flight."""
        piece = self._flight[0]
        data, ended = piece.take(self._waiting)
        if ended:
            self._flight.popleft()
            if self._flight:  # (reading ahead already: keep AHEAD in flight)
                self._fill()
            if not piece.got:
                self._done = True
        return data

    def read(self, size: int) -> bytes:
        """Up to `size` bytes, in order; b"" at the end (or where the object ended short)."""
        return self._gather(size, size)

    def read1(self, size: int) -> bytes:
        """Up to `size` bytes of what has arrived, waiting only for CHUNK of them (or the end): a copy
        hands them on as they come, not once `size` is in (over a far link's flows, seconds)."""
        return self._gather(size, min(size, CHUNK))

    def _gather(self, size: int, least: int) -> bytes:
        while self._held.size < least and not self._done:
            if not self._flight:
                self._fill()  # the reader reads on past what was asked for: now ask ahead
                if not self._flight:
                    self._done = True
                    break
            self._held.add(self._arrived())
        return self._held.take(size)

    def skip(self, size: int) -> None:
        """Pass over the next `size` bytes, asking for none of them that are not asked for already."""
        size -= len(self._held.take(size))
        while size and self._flight and not self._done:  # the ranges in flight come in order: passed, dropped
            data = self._arrived()
            self._held.add(data[size:])
            size -= min(size, len(data))
        if not self._flight:
            self._next += size  # (asked for by the next read that needs it)

    def close(self) -> None:
        """Stop the GETs still in flight."""
        _READING.leave(self)
        for piece in self._flight:
            piece.future.cancel()
        self._flight.clear()

    def __enter__(self) -> "S3Ranges":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
