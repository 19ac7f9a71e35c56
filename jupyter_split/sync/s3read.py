"""Reading an S3 object as one streamed GET, or a big one as ranged GETs on several connections.

s3fs's file object sends a ranged GET for every block it reads; a whole checkpoint
shard read that way costs one request per block. `S3Stream` reads the object's body as
it arrives, in the caller's chunks, from a single request. But one request rides one
connection, and a long lossy link gives one flow only its share: `S3Ranges` asks for a
big object in RANGE pieces, AHEAD of them at once (each on its own connection of
botocore's pool), and hands the bytes back in order, for the copy's one sequential hash.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from typing import Any

from fsspec.asyn import sync


def supports(fs: Any) -> bool:
    """Whether `fs` is s3fs (or acts like it), so an object can be read as one streamed GET."""
    return hasattr(fs, "_call_s3") and hasattr(fs, "split_path")


class S3Stream:
    """An S3 object's body as a binary stream from one GET; raises FileNotFoundError when there is none."""

    def __init__(self, fs: Any, path: str):
        bucket, key, version = fs.split_path(path)
        extra = {"VersionId": version} if version else {}
        self._loop = fs.loop
        try:
            self._body = sync(fs.loop, fs._call_s3, "get_object", Bucket=bucket, Key=key, **extra)["Body"]
        except FileNotFoundError:
            raise FileNotFoundError(f"s3://{bucket}/{key} does not exist") from None

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


RANGE = 4 << 20  # bytes a ranged GET asks for
AHEAD = 4        # ranged GETs of one object in flight at once (as many multipart parts go up at once)
RANGED_MIN = AHEAD * RANGE // 2  # objects over this are read in ranges


class S3Ranges:
    """The object's `size` bytes and one past, read in ranges AHEAD at once, in order.

    The one byte past `size` is asked for too: an object that grew since it was listed reads
    longer than its size, which the copy's size check refuses (a shrunk one reads short).
    """

    def __init__(self, fs: Any, path: str, size: int):
        self._fs, self._loop = fs, fs.loop
        bucket, key, version = fs.split_path(path)
        self._where = f"s3://{bucket}/{key}"
        self._ask = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
        self._next, self._end = 0, size + 1
        self._flight: collections.deque[concurrent.futures.Future] = collections.deque()
        self._buffer, self._at, self._done = b"", 0, False
        self._fill()

    def _fill(self) -> None:
        while len(self._flight) < AHEAD and self._next < self._end:
            last = min(self._next + RANGE, self._end) - 1
            self._flight.append(asyncio.run_coroutine_threadsafe(self._get(self._next, last), self._loop))
            self._next = last + 1

    async def _get(self, first: int, last: int) -> bytes:
        try:
            answer = await self._fs._call_s3("get_object", Range=f"bytes={first}-{last}", **self._ask)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self._where} does not exist") from None
        except OSError as exc:
            if "range is not satisfiable" in str(exc).lower() or "InvalidRange" in str(exc):
                return b""  # the object is shorter now: the copy's size check says so
            raise
        body = answer["Body"]
        try:
            return await body.read()
        finally:
            body.close()

    def read(self, size: int) -> bytes:
        """Up to `size` bytes, in order; b"" at the end (or where the object ended short)."""
        while len(self._buffer) - self._at < size and not self._done:
            if not self._flight:
                self._done = True
                break
            data = self._flight.popleft().result()
            self._fill()
            if not data:
                self._done = True  # short: nothing after it counts
            self._buffer = self._buffer[self._at:] + data
            self._at = 0
        out = self._buffer[self._at:self._at + size]
        self._at += len(out)
        return out

    def close(self) -> None:
        """Stop the GETs still in flight."""
        for piece in self._flight:
            piece.cancel()
        self._flight.clear()

    def __enter__(self) -> "S3Ranges":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
