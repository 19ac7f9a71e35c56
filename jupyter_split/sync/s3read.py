"""Reading an S3 object as one streamed GET, or a big one as ranged GETs on several connections.

s3fs's file object sends a ranged GET for every block it reads; a whole checkpoint
shard read that way costs one request per block. `S3Stream` reads the object's body as
it arrives, in the caller's chunks, from a single request. But one request rides one
connection, and a long lossy link gives one flow only its share: `S3Ranges` asks for a
big object in RANGE pieces, AHEAD of them at once (each on its own connection of
botocore's pool), and hands the bytes back in order, for the copy's one sequential hash.

Both read one version of the object: given its ETag (the version the residency guard judged),
every GET asks for it (`If-Match`); else every answer must carry the first one's. An object
replaced meanwhile ends the read (`Replaced`) instead of handing back bytes of two versions, or
of one the border never judged.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
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
        try:
            answer = sync(fs.loop, fs._call_s3, "get_object", Bucket=bucket, Key=key, **extra)
        except FileNotFoundError:
            raise FileNotFoundError(f"s3://{bucket}/{key} does not exist") from None
        except OSError as exc:
            raise _replaced(f"s3://{bucket}/{key}", exc) from None
        self._body, self.etag = answer["Body"], answer.get("ETag") or etag

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the body; b"" at its end."""
        return sync(self._loop, self._body.read, size)

    def close(self) -> None:
        """Close the body, giving back its connection."""
        self._body.close()

    def __enter__(self) -> "S3Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


RANGE = 4 << 20  # bytes a ranged GET asks for, at most
# The first GET asks for this much, alone, and each after it for twice the one before, up to RANGE:
# a reader that needs only the object's head (the residency guard's scan of a safetensors file,
# which then skips the weights) gets little it does not read, and one that reads on soon has AHEAD
# ranges of RANGE in flight.
FIRST_RANGE = 64 << 10
AHEAD = 4        # ranged GETs of one object in flight at once (as many multipart parts go up at once)
RANGED_MIN = AHEAD * RANGE // 2  # objects over this are read in ranges


class S3Ranges:
    """The object's `size` bytes and one past, read in ranges AHEAD at once, in order.

    The one byte past `size` is asked for too: an object that grew since it was listed reads
    longer than its size, which the copy's size check refuses (a shrunk one reads short).
    `etag`: the version to read (else the first answer's), and after the first answer the one read.
    """

    def __init__(self, fs: Any, path: str, size: int, etag: str | None = None):
        self._fs, self._loop = fs, fs.loop
        bucket, key, version = fs.split_path(path)
        self._where = f"s3://{bucket}/{key}"
        self._ask = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
        self.etag = etag
        self._next, self._end, self._range = 0, size + 1, FIRST_RANGE
        self._flight: collections.deque[concurrent.futures.Future] = collections.deque()
        self._buffer, self._at, self._done = b"", 0, False
        self._fill(1)

    def _fill(self, most: int = AHEAD) -> None:
        while len(self._flight) < most and self._next < self._end:
            last = min(self._next + self._range, self._end) - 1
            self._range = min(2 * self._range, RANGE)
            self._flight.append(asyncio.run_coroutine_threadsafe(self._get(self._next, last), self._loop))
            self._next = last + 1

    async def _get(self, first: int, last: int) -> bytes:
        ask = {**self._ask, **({"IfMatch": self.etag} if self.etag else {})}
        try:
            answer = await self._fs._call_s3("get_object", Range=f"bytes={first}-{last}", **ask)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self._where} does not exist") from None
        except OSError as exc:
            if "range is not satisfiable" in str(exc).lower() or "InvalidRange" in str(exc):
                return b""  # the object is shorter now: the copy's size check says so
            raise _replaced(self._where, exc) from None
        body, tag = answer["Body"], answer.get("ETag")
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
