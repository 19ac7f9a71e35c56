"""The test services are real: a put and get on S3, a Slurm job completes, a Ray job finishes."""
from __future__ import annotations

import fsspec


def test_s3_put_get_and_servers_are_separate(s3, s3_second):
    url = s3.make_bucket("services-check")
    assert url == "s3://services-check"
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.storage_options)
    fs.pipe(f"{url}/hello.txt", b"hello, s3")
    assert fs.cat(f"{url}/hello.txt") == b"hello, s3"
    # The second server is another store with other credentials: the bucket is not there.
    assert (s3.endpoint_url, s3.key) != (s3_second.endpoint_url, s3_second.key)
    other = fsspec.filesystem("s3", skip_instance_cache=True, **s3_second.storage_options)
    assert not other.exists("services-check")
    s3_second.make_bucket("services-check")
    assert other.ls("services-check") == []
