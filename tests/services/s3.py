"""S3 for tests: a real moto_server process on 127.0.0.1, one per fixture, with its own keys."""
from __future__ import annotations

import importlib.util
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from ._proc import ServiceError, free_port, require, start, stop, wait_port


@dataclass
class S3Server:
    """A running moto_server: its endpoint, credentials and a ready fsspec option dict."""

    endpoint_url: str
    key: str
    secret: str
    pid: int
    log: Path

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"key": self.key, "secret": self.secret,
                "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def filesystem(self):
        import fsspec
        # A fresh instance: fsspec caches filesystems by options, and tests stop servers.
        return fsspec.filesystem("s3", skip_instance_cache=True, **self.storage_options)

    def make_bucket(self, name: str) -> str:
        """Create bucket `name` (if absent) and return its URL `s3://name`."""
        fs = self.filesystem()
        if not fs.exists(name):
            fs.mkdir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        stop(self.pid)


def start_s3(state_dir: Path, label: str = "s3") -> S3Server:
    """Start moto_server on a free port; raise `ServiceError` naming the fix if it cannot."""
    if importlib.util.find_spec("moto") is None:
        raise ServiceError("moto_server not found: pip install s3fs 'moto[server]' (in one command)")
    require("moto_server", "pip install s3fs 'moto[server]' (in one command)")
    log = state_dir / f"{label}.log"
    for attempt in range(3):  # a port taken between its pick and the bind: another one
        port = free_port()
        # `python -m moto.server` through this interpreter: the console script may pin another one.
        proc = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)
        try:
            wait_port(port, "moto_server", timeout=30, log=log, proc=proc)
            break
        except ServiceError:
            stop(proc.pid)
            if attempt == 2:
                raise
    return S3Server(endpoint_url=f"http://127.0.0.1:{port}", key=f"{label}-{secrets.token_hex(4)}",
                    secret=secrets.token_hex(16), pid=proc.pid, log=log)


def _fixture(label: str) -> Iterator[S3Server]:
    with tempfile.TemporaryDirectory(prefix=f"js-{label}-") as tmp:
        server = start_s3(Path(tmp), label)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A moto S3 server: `.endpoint_url`, `.key`, `.secret`, `.storage_options`, `.make_bucket()`."""
    yield from _fixture("s3")


@pytest.fixture(scope="session")
def s3_second() -> Iterator[S3Server]:
    """A second, separate S3 server with other credentials (the other side of a border)."""
    yield from _fixture("s3b")
