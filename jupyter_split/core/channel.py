"""Talking to a runner over its unix socket (the live channel): requests, and variables as a pipe.

Every executor that has sessions (local, ssh) hands out the same kind of stream, so this
code is shared: `hello`, `execute`, `put` (the --in payload) and `get` (the --out payload).
"""
from __future__ import annotations

import json
from typing import Any

from .. import transfer
from ..executors.base import Executor, ExecutorError

CHUNK = 4 << 20


async def request(ex: Executor, sock: str, message: dict[str, Any]) -> dict[str, Any]:
    """One JSON request, one JSON reply."""
    reader, writer = await ex.open_channel(sock)
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    if not line:
        raise ConnectionResetError("the runner closed the channel")
    return json.loads(line)


async def enqueue(ex: Executor, sock: str, run_dir: str) -> None:
    reply = await request(ex, sock, {"op": "execute", "run_dir": run_dir})
    if not reply.get("ok"):
        raise ExecutorError(f"site {ex.site.name!r}: the session refused the cell: {reply.get('error')}")


async def put(ex: Executor, sock: str, run_dir: str, data: transfer.Payload) -> None:
    """Send --in data to the session: a pipe, no file in between."""
    reader, writer = await ex.open_channel(sock)
    try:
        writer.write(json.dumps({"op": "put", "run_dir": run_dir, "size": len(data)}).encode() + b"\n")
        with transfer.progress(len(data), f"--in to {ex.site.name}") as advance:
            for chunk in data.chunks(CHUNK):
                writer.write(chunk)
                await writer.drain()
                advance(chunk.nbytes)
        reply = json.loads(await reader.readline() or b"{}")
    finally:
        writer.close()
    if not reply.get("ok"):
        raise ExecutorError(f"site {ex.site.name!r}: the session did not take the --in data: {reply.get('error')}")


async def get(ex: Executor, sock: str, run_dir: str) -> bytearray | None:
    """--out data from the session's memory (or its run directory); None if it has none."""
    reader, writer = await ex.open_channel(sock)
    try:
        writer.write(json.dumps({"op": "get", "run_dir": run_dir}).encode() + b"\n")
        reply = json.loads(await reader.readline() or b"{}")
        if not reply.get("ok"):
            return None
        data = bytearray(reply["size"])
        with transfer.progress(len(data), f"--out from {ex.site.name}") as advance:
            pos = 0
            while pos < len(data):
                chunk = await reader.read(min(CHUNK, len(data) - pos))
                if not chunk:
                    raise ConnectionResetError(f"site {ex.site.name!r}: the channel closed mid-transfer")
                data[pos:pos + len(chunk)] = chunk
                pos += len(chunk)
                advance(len(chunk))
        return data
    finally:
        writer.close()
