"""Talking to a runner over its unix socket (the live channel, `protocol`): requests, and variables as a pipe.

Every executor that has sessions (local, ssh) hands out the same kind of stream, so this
code is shared: `hello`, `execute` (a cell, followed on the same channel), `put` (the --in payload)
and `get` (the --out payload).
"""
from __future__ import annotations

import posixpath
from typing import Any, AsyncIterator

from .. import protocol, transfer
from ..progress import Progress
from ..executors.base import Executor, ExecutorError

#: `--in`/`--out` payloads smaller than this show no progress bar: they take no time to wait for
PROGRESS_BYTES = 8 << 20

async def request(ex: Executor, sock: str, message: dict[str, Any]) -> dict[str, Any]:
    """One JSON request, one JSON reply."""
    reader, writer = await ex.open_channel(sock)
    try:
        writer.write(protocol.encode(message))
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    if not line:
        raise ConnectionResetError("the runner closed the channel")
    return protocol.decode(line)


async def execute(ex: Executor, sock: str, run_dir: str, request: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
    """Queue the cell `request` on the session (it writes the request.json in `run_dir`) and follow it on the
    same channel: a warm cell's first record is one round trip away. Returns its records as `follow` takes
    them, once the session has taken the cell; asked again for the same `run_dir`, the session runs the cell
    once and replays its records.

    Raises ExecutorError where the session refuses the cell, ConnectionError (OSError) where the channel
    failed before the session answered (it may be gone: ask it, then send again)."""
    reader, writer = await ex.open_channel(sock)
    try:
        writer.write(protocol.encode({"op": "execute", "run_dir": run_dir, "request": request, "follow": True}))
        await writer.drain()
        line = await reader.readline()
    except BaseException:
        writer.close()
        raise
    reply = protocol.decode(line)
    if not reply.get("ok"):
        writer.close()
        if not line:
            raise ConnectionResetError(f"site {ex.site.name!r}: the session closed the channel before taking the cell")
        raise ExecutorError(f"site {ex.site.name!r}: the session refused the cell: {reply.get('error')}")
    return records(reader, writer)


async def records(reader: Any, writer: Any) -> AsyncIterator[list[dict[str, Any]]]:
    """The event records a runner streams on a channel, one a batch, until it closes; then the channel is closed."""
    try:
        while line := await reader.readline():
            yield [protocol.decode(line)]
    finally:
        writer.close()


async def put(ex: Executor, sock: str, run_dir: str, data: transfer.Payload) -> None:
    """Send --in data to the session: a pipe, no file in between."""
    reader, writer = await ex.open_channel(sock)
    try:
        writer.write(protocol.encode({"op": "put", "run_dir": run_dir, "size": len(data)}))
        with Progress(len(data), f"--in to {ex.site.name}", min_total=PROGRESS_BYTES, leave=False) as bar:
            for chunk in data.chunks(protocol.CHUNK):
                writer.write(chunk)
                await writer.drain()
                bar.update(chunk.nbytes)
        reply = protocol.decode(await reader.readline())
    finally:
        writer.close()
    if not reply.get("ok"):
        raise ExecutorError(f"site {ex.site.name!r}: the session did not take the --in data: {reply.get('error')}")


async def get(ex: Executor, sock: str, run_dir: str) -> bytes | bytearray | None:
    """--out data from the session's memory (or its run directory); None if it has none. A payload
    above the executor's `wide_above()` is read from its file over the executor's wide path."""
    wide = await ex.wide_above()
    reader, writer = await ex.open_channel(sock)
    try:
        ask = {"op": "get", "run_dir": run_dir}
        if wide is not None:
            ask["file_above"] = wide
        writer.write(protocol.encode(ask))
        reply = protocol.decode(await reader.readline())
        if not reply.get("ok"):
            return None
        if reply.get("file"):
            writer.close()
            return await read_payload(ex, reply["file"], int(reply["size"]))
        data = bytearray(reply["size"])
        with Progress(len(data), f"--out from {ex.site.name}", min_total=PROGRESS_BYTES, leave=False) as bar:
            pos = 0
            while pos < len(data):
                chunk = await reader.read(min(protocol.CHUNK, len(data) - pos))
                if not chunk:
                    raise ConnectionResetError(f"site {ex.site.name!r}: the channel closed mid-transfer")
                data[pos:pos + len(chunk)] = chunk
                pos += len(chunk)
                bar.update(len(chunk))
        return data
    finally:
        writer.close()


async def write_payload(ex: Executor, path: str, data: transfer.Payload) -> None:
    """--in data as a file on the site (the runner reads it from its run directory), with a progress bar."""
    with Progress(len(data), f"--in to {ex.site.name}", min_total=PROGRESS_BYTES, leave=False) as bar:
        await ex.write_payload(path, data.chunks(protocol.CHUNK), len(data), bar.update)


async def read_payload(ex: Executor, path: str, size: int) -> bytes | bytearray:
    """--out data from its file on the site, with a progress bar."""
    with Progress(size, f"--out from {ex.site.name}", min_total=PROGRESS_BYTES, leave=False) as bar:
        return await ex.read_payload(path, size, bar.update)


async def output(ex: Executor, record: Any) -> bytes | bytearray:
    """A run's --out data (`record`: its `RunRecord`): from the live session's memory when it is there,
    else from the run directory (a big payload over the executor's wide path)."""
    data = None
    if record.mode == "session" and await ex.alive(record.handle):
        data = await get(ex, record.handle["sock"], record.run_dir)
    if data is not None:
        return data
    path = posixpath.join(record.run_dir, "out.pkl")
    wide = await ex.wide_above()
    info = await ex.file_info(path) if wide is not None else None
    if info is not None and info[0] > wide:
        return await read_payload(ex, path, info[0])
    return await ex.read_file(path)
