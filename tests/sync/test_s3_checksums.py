"""What an upload to S3 (moto_server) carries to be verified: each body's MD5 as Content-MD5, which the
store checks on receipt, and no CRC32 of the SDK's own (botocore >= 1.36 adds one by default); the
ETag then verifies each object without reading it back."""
from __future__ import annotations

import base64
import hashlib

import pytest

from jupyter_split import sync
from jupyter_split.sync import engine, rounds, s3parts
from jupyter_split.sync.fsutil import resolve

from tests.sync.test_local import make_tree
from tests.sync.test_remote import s3_hashes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("split_home")]


def test_uploads_carry_their_md5_and_no_sdk_checksum_and_verify_by_etag(tmp_path, s3, monkeypatch):
    # one file of two multipart parts (the threshold lowered: parts are PART_SIZE as always), two single PUTs
    monkeypatch.setattr(s3parts, "MULTIPART_MIN", s3parts.PART_SIZE + 1)
    src = tmp_path / "src"
    hashes = make_tree(src, {"w/big.bin": s3parts.PART_SIZE + 4321, "w/shard.bin": 3 << 20, "config.json": 300})
    s3.make_bucket("sync-md5")
    sent: list[tuple[str, dict[str, str], bytes]] = []

    def record(request, **_):
        if request.method == "PUT":  # PutObject and UploadPart
            body = request.body if isinstance(request.body, bytes) else request.body.getvalue()
            headers = {name: value.decode() if isinstance(value, bytes) else value for name, value in request.headers.items()}
            sent.append((request.url, headers, body))

    def resolve_recorded(url, options):
        where = resolve(url, options)
        if url.startswith("s3://"):
            where.fs.call_s3("list_buckets")  # the client exists once a call was made
            where.fs.s3.meta.events.register("before-send.s3", record)
        return where

    read_back: list[list] = []
    verify = rounds._verify
    monkeypatch.setattr(engine, "resolve", resolve_recorded)
    monkeypatch.setattr(rounds, "_verify", lambda plan, items, *a: read_back.append(items) or verify(plan, items, *a))
    report = sync.copy(str(src), "s3://sync-md5/ck", dest_options=s3.storage_options, progress=False)

    assert s3_hashes(s3.filesystem(), "sync-md5/ck") == hashes
    assert report.files_verified == 3 and not read_back  # every object verified by its ETag
    bodies = [(url, headers, body) for url, headers, body in sent if not url.split("?")[0].endswith("manifest.json")]
    assert len(bodies) == 4  # two parts and two PUTs
    for url, headers, body in bodies:
        assert headers["Content-MD5"] == base64.b64encode(hashlib.md5(body).digest()).decode(), url
        assert not [name for name in headers if name.lower().startswith("x-amz-checksum-")], url
