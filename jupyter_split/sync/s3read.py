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
import time
from typing import Any

from fsspec.asyn import sync

from ..residency.pins import PinError


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


RANGE = 4 << 20  # bytes a ranged GET asks for, at most
# For a reader that may need only the object's head (the residency guard's scan of a safetensors
# file, which then skips the weights) the first GET asks for this much, alone, and each after it
# for twice the one before, up to RANGE: it gets little it does not read, and if it reads on it
# soon has AHEAD ranges of RANGE in flight.
FIRST_RANGE = 64 << 10
AHEAD = 4        # ranged GETs of one object in flight at once (as many multipart parts go up at once)
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


class S3Ranges:
    """The object's `size` bytes and one past, read in ranges AHEAD at once, in order.

    The one byte past `size` is asked for too: an object that grew since it was listed reads
    longer than its size, which the copy's size check refuses (a shrunk one reads short).
    `etag`: the version to read (else the first answer's), and after the first answer the one read.
    `head_first`: a reader that may need only the head (FIRST_RANGE, then ranges that grow as it reads
    on); else AHEAD ranges of RANGE from the start.
    """

    def __init__(self, fs: Any, path: str, size: int, etag: str | None = None, head_first: bool = False):
        self._fs, self._loop = fs, fs.loop
        bucket, key, version = fs.split_path(path)
        self._where = f"s3://{bucket}/{key}"
        self._ask = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
        self.etag = etag
        self._next, self._end, self._range = 0, size + 1, FIRST_RANGE if head_first else RANGE
        self._store = _store(fs, bucket)
        self._flight: collections.deque[concurrent.futures.Future] = collections.deque()
        self._buffer, self._at, self._done = b"", 0, False
        self._fill(1 if head_first else AHEAD)

    def _fill(self, most: int = AHEAD) -> None:
        while len(self._flight) < most and self._next < self._end:
            last = min(self._next + self._range, self._end) - 1
            self._range = min(2 * self._range, RANGE)
            self._flight.append(asyncio.run_coroutine_threadsafe(self._get(self._next, last), self._loop))
            self._next = last + 1

    async def _get(self, first: int, last: int) -> bytes:
        ask = {**self._ask, **({"IfMatch": self.etag} if self.etag else {})}
        asked = time.monotonic()
        try:
            answer = await self._fs._call_s3("get_object", Range=f"bytes={first}-{last}", **ask)
            _answered(self._store, time.monotonic() - asked)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self._where} does not exist") from None
        except OSError as exc:
            if "range is not satisfiable" in str(exc).lower() or "InvalidRange" in str(exc):
                return b""  # the object is shorter now: the copy's size check says so
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
            return await body.read()
        finally:
            body.close()

    def read(self, size: int) -> bytes:
        """Up to `size` bytes, in order; b"" at the end (or where the object ended short)."""
        while len(self._buffer) - self._at < size and not self._done:
            if not self._flight:
                self._fill()  # the reader reads on past what was asked for: now ask ahead
                if not self._flight:
                    self._done = True
                    break
            data = self._flight.popleft().result()
            if self._flight:  # (reading ahead already: keep AHEAD in flight)
                self._fill()
            if not data:
                self._done = True  # short: nothing after it counts
            self._buffer = self._buffer[self._at:] + data
            self._at = 0
        out = self._buffer[self._at:self._at + size]
        self._at += len(out)
        return out

    def skip(self, size: int) -> None:
        """Pass over the next `size` bytes, asking for none of them that are not asked for already."""
        held = min(size, len(self._buffer) - self._at)
        self._at += held
        size -= held
        while size and self._flight:  # the ranges in flight come in order: those it passes are dropped
            data = self._flight.popleft().result()
            if not data:
                self._done = True
                return
            if len(data) > size:
                self._buffer, self._at = data, size
                size = 0
            else:
                size -= len(data)
        self._next += size  # (asked for by the next read that needs it)

    def close(self) -> None:
        """Stop the GETs still in flight."""
        for piece in self._flight:
            piece.cancel()
        self._flight.clear()

    def __enter__(self) -> "S3Ranges":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
