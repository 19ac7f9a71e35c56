"""One process on an SFTP server, kept for a copy: it hashes stored files, and writes small ones.

Starting a command costs the server a whole session (a fork, a login, a shell), which
on a busy two-core machine took more CPU than hashing 64 MB; the kept process pays that
once per copy. It is the server's `python3` where there is one (OpenSSL's sha256, about
twice as fast as coreutils' `sha256sum` on CPUs with SHA instructions, and no process per
batch), else a shell running `sha256sum` per batch. Both answer in `sha256sum`'s format,
then a marker line.

The python3 worker also writes small files sent to it in one stream, then hashes each as
stored, and renames files in batches: over SFTP every file costs an open, a write and a
close, and every rename a request, round trips rsync does not pay for a tree of small files.
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

# One JSON request a line: {"base", "names", "marker"} and, to write files first, "sizes"
# with their bytes following the line, or to rename, "moves", or to send files back,
# "read": then the answer is a JSON list of sizes (-1: unreadable), the files' bytes, and
# the marker. Files it cannot write, read or rename are left out of the answer.
_PY_LOOP = r"""
import hashlib, json, os, sys
sys.stdout.reconfigure(errors="surrogateescape")
stdin = sys.stdin.buffer
buf = bytearray(1 << 20)
print("python-ready", flush=True)
while line := stdin.readline():
    request = json.loads(line)
    for old, new in request.get("moves", ()):
        try:
            os.replace(old, new)
            print("moved  " + json.dumps(new))
        except OSError:
            pass
    if request.get("read"):
        blobs = []
        for name in request["names"]:
            try:
                with open(os.path.join(request["base"], name), "rb") as f:
                    blobs.append(f.read())
            except OSError:
                blobs.append(None)
        sys.stdout.flush()
        sys.stdout.buffer.write(json.dumps([-1 if b is None else len(b) for b in blobs]).encode() + b"\n")
        sys.stdout.buffer.write(b"".join(b for b in blobs if b))
        sys.stdout.buffer.flush()
        print(request["marker"], flush=True)
        continue
    sizes = request.get("sizes")
    for i, name in enumerate(request["names"]):
        data = stdin.read(sizes[i]) if sizes else None
        digest = hashlib.sha256()
        try:
            # a file sent is written, then read back through the same descriptor and hashed
            with open(os.path.join(request["base"], name), "w+b" if sizes else "rb", buffering=0) as f:
                if sizes:
                    view = memoryview(data)
                    while view:
                        view = view[f.write(view):]
                    f.seek(0)
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


class RemoteWorker:
    """The kept process on the SFTP server behind `fs` (an sshfs filesystem)."""

    def __init__(self, fs: Any):
        self._fs = fs
        self._process: Any = None
        self._python = False
        self._lock = threading.Lock()  # guards starting it and `_broken`
        self._reading: asyncio.Lock | None = None  # answers are read in the order requests went
        self._starting: concurrent.futures.Future | None = None
        self._broken = False

    def start_soon(self) -> None:
        """Start the server process now, without waiting: a copy does it as its sends begin."""
        with self._lock:
            self._start_soon()

    @property
    def writes(self) -> bool:
        """Whether it can write and send back files (the python3 worker); waits for it to start."""
        with self._lock:
            try:
                self._start_soon().result()
            except Exception:
                self._broken = True
            return self._python and not self._broken

    def hash(self, paths: list[str]) -> dict[str, str]:
        """path -> sha256 of those it could hash.

        Files it could not hash are left out (missing, or a server with no shell, e.g. an
        SFTP-only account, or with neither python3 nor `sha256sum`): the caller reads
        those back instead.
        """
        return self._ask(paths, None)

    def put(self, files: list[tuple[str, bytes]]) -> dict[str, str]:
        """Write each (path, bytes), then path -> sha256 of each as stored; files it could not
        write are left out, for the caller to send the usual way (which names the error)."""
        return self._ask([path for path, _ in files], [data for _, data in files])

    def get(self, paths: list[str]) -> dict[str, bytes]:
        """path -> the bytes of each file it could read, in one stream (the python3 worker
        only); the rest are left out, for the caller to read the usual way."""
        return self._ask(paths, None, read=True)

    def move(self, moves: list[tuple[str, str]]) -> set[str]:
        """Rename each (old, new) on the server, replacing `new`; the `new` paths that moved."""
        if not moves or not self.writes:
            return set()
        try:
            return sync(self._fs.loop, self._move, moves)
        except Exception:
            self._broken = True
            return set()

    def close(self) -> None:
        """End the server process, waiting for it to start first if it is on its way; errors are ignored."""
        with self._lock:
            if self._starting is not None:
                concurrent.futures.wait([self._starting], timeout=START_TIMEOUT)
            process, self._process = self._process, None
            if process is not None:
                try:
                    sync(self._fs.loop, _close, process)
                except Exception:
                    pass  # the connection is gone already, and the process with it

    def _start_soon(self) -> concurrent.futures.Future:
        if self._starting is None:
            self._starting = asyncio.run_coroutine_threadsafe(self._start(), self._fs.loop)
        return self._starting

    def _ask(self, paths: list[str], datas: list[bytes] | None, read: bool = False) -> dict[str, Any]:
        # Requests from many threads are pipelined: each is written as it comes and the
        # process answers them in turn, so it always has the next batch waiting.
        with self._lock:
            if self._broken or not paths:
                return {}
            starting = self._start_soon()
        try:
            starting.result()
            if (datas is not None or read) and not self._python:
                return {}
            return sync(self._fs.loop, self._read if read else self._request, paths, datas)
        except Exception:  # no shell, a dropped link: the caller falls back
            self._broken = True
            return {}

    async def _start(self) -> None:
        process = await self._fs.client.create_process("sh -s", encoding=None)
        process.stdin.write(_start_line().encode())
        # a forced command (an SFTP-only account) may neither run ours nor hang up
        ready = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        self._python = ready.strip() == b"python-ready"
        self._reading = asyncio.Lock()
        self._process = process

    async def _request(self, paths: list[str], datas: list[bytes] | None) -> dict[str, str]:
        base, names = _relative(paths)
        marker = f"jupyter-split-done-{uuid.uuid4().hex}"
        if self._python:
            request = {"base": base, "names": names, "marker": marker}
            if datas is not None:
                request["sizes"] = [len(data) for data in datas]
            # one write: a write per file would be an SSH packet per file
            self._process.stdin.write(b"".join([json.dumps(request).encode(), b"\n", *(datas or ())]))
        else:  # a subshell, so the shell's own folder never changes; every name quoted
            line = f"(cd -- {shlex.quote(base)} && {shlex.join(['sha256sum', '--', *names])}) 2>/dev/null; echo {marker}\n"
            self._process.stdin.write(line.encode("utf-8", "surrogateescape"))
        output = await self._answer(marker)
        digests = _parse(output[: -len(marker) - 1].decode("utf-8", "surrogateescape"))
        return {path: digests[name] for path, name in zip(paths, names) if name in digests}

    async def _move(self, moves: list[tuple[str, str]]) -> set[str]:
        marker = f"jupyter-split-done-{uuid.uuid4().hex}"
        request = {"moves": moves, "base": "/", "names": [], "marker": marker}
        self._process.stdin.write(json.dumps(request).encode() + b"\n")
        output = await self._answer(marker)
        lines = output[: -len(marker) - 1].decode("utf-8", "surrogateescape").split("\n")
        return {json.loads(line[len("moved  "):]) for line in lines if line.startswith("moved  ")}

    async def _read(self, paths: list[str], _: None) -> dict[str, bytes]:
        base, names = _relative(paths)
        marker = f"jupyter-split-done-{uuid.uuid4().hex}"
        self._process.stdin.write(json.dumps({"base": base, "names": names, "marker": marker, "read": True}).encode() + b"\n")
        async with self._reading:  # taken with no await since the write: answers come in order
            sizes = json.loads(await self._process.stdout.readline())
            data = await self._process.stdout.readexactly(sum(size for size in sizes if size > 0))
            await self._process.stdout.readuntil(marker.encode() + b"\n")
        found, offset = {}, 0
        for path, size in zip(paths, sizes):
            if size >= 0:
                found[path] = data[offset:offset + size]
                offset += size
        return found

    async def _answer(self, marker: str) -> bytes:
        # Called right after the request is written, with no await between: the lock is
        # fair, so answers are taken in the order the requests were written.
        async with self._reading:
            return await self._process.stdout.readuntil(marker.encode() + b"\n")


def _relative(paths: list[str]) -> tuple[str, list[str]]:
    """A folder holding every path, and each path relative to it."""
    base = posixpath.commonpath(paths) if len(paths) > 1 else posixpath.dirname(paths[0])
    if base in paths:
        base = posixpath.dirname(base)
    return base, [posixpath.relpath(path, base) for path in paths]


def _parse(output: str) -> dict[str, str]:
    digests = {}
    for line in output.split("\n"):  # not splitlines: a name may hold \f or \x1c
        digest, sep, name = line.partition("  ")
        if not sep:
            continue
        if digest.startswith("\\"):  # names holding a backslash or newline come escaped
            digest = digest[1:]
            name = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), name)
        digests[name] = digest
    return digests


async def _close(process: Any) -> None:
    # not waiting for the server's close in turn: over a far link that is a round trip at the end of
    # every copy; the process ends at its end of input, and the channel closes on the loop meanwhile
    process.stdin.write_eof()
    process.close()
