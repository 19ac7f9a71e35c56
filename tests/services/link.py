"""A site's network link: a TCP relay on 127.0.0.1, N MB/s each way, with latency.

On this machine every server is on loopback, where the CPU, not the wire, is the limit.
Between two sites the links are the limit, and each site has its own. A relay per
server gives each its own cap, shared by every connection through it, the way a
site's uplink is shared; it changes no byte. The benchmarks put sites behind them;
tests use one to slow a transfer down enough to interrupt it mid-way.

    python tests/services/link.py --to PORT --mb-per-s N [--rtt-ms MS]   # prints the port it listens on
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

CHUNK = 64 << 10


class Pace:
    """Admits bytes at `rate` per second: each chunk waits for its slot on a shared clock.

    Time a late wake-up loses is made up later, up to BURST seconds' worth of bytes.
    """

    BURST = 0.05

    def __init__(self, rate: float):
        self.rate = rate
        self.free_at = 0.0

    async def take(self, n: int) -> None:
        now = asyncio.get_running_loop().time()
        self.free_at = max(self.free_at, now - self.BURST) + n / self.rate
        if self.free_at - now > 0.001:
            await asyncio.sleep(self.free_at - now)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pace: Pace, delay: float) -> None:
    # Paced chunks wait `delay` in a queue before they go on: the link's one-way latency.
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            writer.write(data)
            await writer.drain()

    delivering = asyncio.ensure_future(deliver())
    try:
        while data := await reader.read(CHUNK):
            await pace.take(len(data))
            queue.put_nowait((loop.time() + delay, data))
        queue.put_nowait((0.0, b""))
        await delivering
    except ConnectionError:
        pass
    finally:
        delivering.cancel()
        writer.close()


async def _serve(target: int, rate: float, delay: float, ready: socket.socket) -> None:
    up, down = Pace(rate), Pace(rate)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        t_reader, t_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(_pump(reader, t_writer, up, delay), _pump(t_reader, writer, down, delay))

    server = await asyncio.start_server(relay, sock=ready)
    parent = os.getppid()
    async with server:
        while os.getppid() == parent:  # a benchmark that dies leaves no relay behind
            await asyncio.sleep(0.5)


@dataclass
class Link:
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_link(target_port: int, mb_per_s: float, rtt_ms: float = 0.0) -> Link:
    """A relay process to `target_port`, capped at `mb_per_s` (1e6 bytes) each way, adding `rtt_ms`."""
    process = subprocess.Popen([sys.executable, __file__, "--to", str(target_port), "--mb-per-s", str(mb_per_s),
                                "--rtt-ms", str(rtt_ms)], stdout=subprocess.PIPE, text=True)
    return Link(port=int(process.stdout.readline()), process=process)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="link.py")
    parser.add_argument("--to", type=int, required=True, help="the server's port on 127.0.0.1")
    parser.add_argument("--mb-per-s", type=float, required=True)
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="round trip time the link adds (half each way)")
    args = parser.parse_args(argv)
    sock = socket.create_server(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    asyncio.run(_serve(args.to, args.mb_per_s * 1e6, args.rtt_ms / 2000, sock))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
