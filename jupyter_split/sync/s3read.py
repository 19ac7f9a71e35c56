"""Reading an S3 object as one streamed GET.

s3fs's file object sends a ranged GET for every block it reads; a whole checkpoint
shard read that way costs one request per block. This reads the object's body as
it arrives, in the caller's chunks, from a single request.
"""
from __future__ import annotations

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
