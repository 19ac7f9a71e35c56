"""Hashing files where an SFTP server stores them, without reading them back.

One process on the server, opened on the copy's own SSH connection and kept for the
copy, hashes each batch of files it is handed. Starting a command costs the server a
whole session (a fork, a login, a shell), which on a busy two-core machine took more
CPU than hashing 64 MB; the kept process pays that once per copy. It is the server's
`python3` where there is one (OpenSSL's sha256, about twice as fast as coreutils'
`sha256sum` on CPUs with SHA instructions, and no process per batch), else a shell
running `sha256sum` per batch. Both answer in `sha256sum`'s format, then a marker line.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import posixpath
import re
import shlex
import threading
import uuid
from typing import Any

from fsspec.asyn import sync

# Reads one JSON request a line: {"base", "names", "marker"}; files it cannot read are left out.
_PY_LOOP = r"""
import hashlib, json, os, sys
sys.stdout.reconfigure(errors="surrogateescape")
buf = bytearray(1 << 20)
print("python-ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    for name in request["names"]:
        digest = hashlib.sha256()
        try:
            with open(os.path.join(request["base"], name), "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    digest.update(memoryview(buf)[:n])
        except OSError:
            continue
        shown = name.replace("\\", "\\\\").replace("\n", "\\n")
        print(("\\" if shown != name else "") + digest.hexdigest() + "  " + shown)
    print(request["marker"], flush=True)
"""
PYTHON = "python3"  # the server's interpreter, looked up on its PATH
START_TIMEOUT = 20.0


def _start_line() -> str:
    python = shlex.quote(PYTHON)
    return (f"if command -v {python} >/dev/null 2>&1 && {python} -c 'import sys; sys.exit(sys.version_info < (3, 8))' "
            f"2>/dev/null; then exec {python} -u -c {shlex.quote(_PY_LOOP)}; fi; echo sh-ready\n")


class RemoteHasher:
    """sha256 of files on the SFTP server behind `fs` (an sshfs filesystem), in batches."""

    def __init__(self, fs: Any):
        self._fs = fs
        self._process: Any = None
        self._python = False
        self._lock = threading.Lock()  # one process: batches take turns
        self._starting: concurrent.futures.Future | None = None
        self._broken = False

    def start_soon(self) -> None:
        """Start the server process now, without waiting: a copy does it as its sends begin."""
        with self._lock:
            self._start_soon()

    def _start_soon(self) -> concurrent.futures.Future:
        if self._starting is None:
            self._starting = asyncio.run_coroutine_threadsafe(self._start(), self._fs.loop)
        return self._starting

    def hash(self, paths: list[str]) -> dict[str, str]:
        """path -> sha256 of those it could hash.

        Files it could not hash are left out (missing, or a server with no shell, e.g. an
        SFTP-only account, or with neither python3 nor `sha256sum`): the caller reads
        those back instead.
        """
        with self._lock:
            if self._broken or not paths:
                return {}
            try:
                self._start_soon().result()
                return sync(self._fs.loop, self._hash, paths)
            except Exception:  # no shell, a dropped link: reading back still verifies
                self._broken = True
                return {}

    def close(self) -> None:
        with self._lock:
            if self._starting is not None:
                concurrent.futures.wait([self._starting], timeout=START_TIMEOUT)
            process, self._process = self._process, None
            if process is not None:
                try:
                    sync(self._fs.loop, _close, process)
                except Exception:
                    pass  # the connection is gone already, and the process with it

    async def _start(self) -> None:
        process = await self._fs.client.create_process("sh -s", encoding="utf-8", errors="surrogateescape")
        process.stdin.write(_start_line())
        # a forced command (an SFTP-only account) may neither run ours nor hang up
        ready = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        self._python = ready.strip() == "python-ready"
        self._process = process

    async def _hash(self, paths: list[str]) -> dict[str, str]:
        base = posixpath.commonpath(paths) if len(paths) > 1 else posixpath.dirname(paths[0])
        if base in paths:
            base = posixpath.dirname(base)
        names = [posixpath.relpath(path, base) for path in paths]
        marker = f"jupyter-split-hashed-{uuid.uuid4().hex}"
        if self._python:
            request = json.dumps({"base": base, "names": names, "marker": marker}) + "\n"
        else:  # a subshell, so the shell's own folder never changes; every name quoted
            request = f"(cd -- {shlex.quote(base)} && {shlex.join(['sha256sum', '--', *names])}) 2>/dev/null; echo {marker}\n"
        self._process.stdin.write(request)
        output = await self._process.stdout.readuntil(marker + "\n")
        digests = _parse(output[: -len(marker) - 1])
        return {path: digests[name] for path, name in zip(paths, names) if name in digests}


def _parse(output: str) -> dict[str, str]:
    digests = {}
    for line in output.splitlines():
        digest, sep, name = line.partition("  ")
        if not sep:
            continue
        if digest.startswith("\\"):  # names holding a backslash or newline come escaped
            digest = digest[1:]
            name = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), name)
        digests[name] = digest
    return digests


async def _close(process: Any) -> None:
    process.stdin.write_eof()
    process.close()
    await process.wait_closed()
