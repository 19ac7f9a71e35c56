"""Big files to S3 as resumable multipart uploads, parts in parallel.

s3fs aborts a multipart upload that fails and starts over. Here a killed or failed
upload is left open; the next run finds it by key, reuses every part whose ETag is
the MD5 of the same source range (so a part is never trusted on its size alone),
sends the rest, several parts at a time, and completes it. The sha256 still comes
from one sequential read of the source.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
from concurrent.futures import Future
from typing import Any, Callable

PART_SIZE = 16 << 20        # S3 wants at least 5 MiB for every part but the last
PARTS_IN_FLIGHT = 4
# Smaller files go as one PUT: resuming them saves little, and a multipart upload costs
# the store more (on moto_server 20 MB files went 170 -> 240 MB/s as single PUTs).
MULTIPART_MIN = 4 * PART_SIZE


def supports(fs: Any) -> bool:
    """Whether `fs` is s3fs (or acts like it), so an upload can be multipart and resumed here."""
    return hasattr(fs, "_call_s3") and hasattr(fs, "split_path")


def send(fs: Any, path: str, reader: Any, digest: Any, on_bytes: Callable[[int], None]) -> tuple[int, int, bool]:
    """Upload what `reader` holds to `path`, feeding `digest`.

    Returns the bytes read, the bytes reused from an earlier run, and whether S3's
    ETag for the object matches the MD5s of what was read.
    """
    bucket, key, _ = fs.split_path(path)
    upload_id, existing = _open_upload(fs, bucket, key)
    read = reused = 0
    parts: dict[int, str] = {}
    inflight: dict[int, Future] = {}
    try:
        for number, data in enumerate(iter(lambda: reader.read(PART_SIZE), b""), start=1):
            digest.update(data)
            read += len(data)
            etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if existing.get(number) == (etag, len(data)):
                parts[number] = etag
                reused += len(data)
            else:
                if len(inflight) >= PARTS_IN_FLIGHT:
                    _collect(inflight, parts, wait_for_one=True)
                inflight[number] = _submit(fs, "upload_part", Bucket=bucket, Key=key, UploadId=upload_id,
                                           PartNumber=number, Body=data, **content_md5(etag))
            on_bytes(len(data))
        _collect(inflight, parts, wait_for_one=False)
    except BaseException:
        for future in inflight.values():
            future.cancel()
        raise  # the upload stays open: the next run reuses its finished parts
    listing = [{"PartNumber": n, "ETag": f'"{parts[n]}"'} for n in sorted(parts)]
    done = _call(fs, "complete_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id,
                 MultipartUpload={"Parts": listing})
    fs.invalidate_cache(path)
    return read, reused, done.get("ETag", "").strip('"') == composite_etag(parts)


def content_md5(md5_hex: str) -> dict[str, str]:
    """The request argument that sends a body's MD5 (hex) as Content-MD5: the store refuses a body
    that does not match it, so the MD5 the copy computes anyway stands in for the SDK's own checksum."""
    return {"ContentMD5": base64.b64encode(bytes.fromhex(md5_hex)).decode("ascii")}


def composite_etag(parts: dict[int, str]) -> str:
    """S3's ETag of a multipart object: the MD5 of its parts' MD5s, a dash, the part count.

    S3 computes it from the bytes it stored; here it comes from the bytes that were
    read (and sha256-hashed), so equal ETags verify the upload without reading it back.
    """
    joined = b"".join(bytes.fromhex(parts[n]) for n in sorted(parts))
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(parts)}"


def abort_under(fs: Any, root: str) -> None:
    """Abort every open upload below `root` (what killed runs left and nobody will finish)."""
    bucket, prefix, _ = fs.split_path(root)
    for upload in _uploads(fs, bucket, prefix.rstrip("/") + "/"):
        _call(fs, "abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def _open_upload(fs: Any, bucket: str, key: str) -> tuple[str, dict[int, tuple[str, int]]]:
    """The newest open upload for `key` with its parts (number -> (md5, size)), or a new one."""
    mine = sorted((u for u in _uploads(fs, bucket, key) if u["Key"] == key), key=lambda u: u["Initiated"])
    if not mine:
        return _call(fs, "create_multipart_upload", Bucket=bucket, Key=key)["UploadId"], {}
    upload_id = mine[-1]["UploadId"]
    existing: dict[int, tuple[str, int]] = {}
    marker = 0
    while True:
        page = _call(fs, "list_parts", Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker)
        for part in page.get("Parts", []):
            existing[part["PartNumber"]] = (part["ETag"].strip('"'), part["Size"])
        if not page.get("IsTruncated"):
            return upload_id, existing
        marker = page["NextPartNumberMarker"]


def _uploads(fs: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = _call(fs, "list_multipart_uploads", **kwargs)
        found += page.get("Uploads", [])
        if not page.get("IsTruncated"):
            return found
        kwargs.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])


def _collect(inflight: dict[int, Future], parts: dict[int, str], wait_for_one: bool) -> None:
    numbers = [min(inflight)] if wait_for_one else sorted(inflight)
    for number in numbers:
        parts[number] = inflight.pop(number).result()["ETag"].strip('"')


def _submit(fs: Any, method: str, **kwargs: Any) -> Future:
    # fsspec runs s3fs on its own event loop thread: queue the call there, do not block.
    return asyncio.run_coroutine_threadsafe(fs._call_s3(method, **kwargs), fs.loop)


def _call(fs: Any, method: str, **kwargs: Any) -> Any:
    return _submit(fs, method, **kwargs).result()
