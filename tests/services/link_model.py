"""The link model: a TCP relay on 127.0.0.1 to one server that behaves as a path between two sites.

On this machine every server is on loopback, where the CPU, not the wire, is the limit, and the
kernel has no netem. The link is built here instead, per connection and per direction, the way
a long-distance TCP path behaves:

- a delay line: bytes arrive the one-way delay (plus jitter) after they leave, in order;
- a window: at most `window` bytes in flight, from when the relay reads them until their ack
  would be back (delivered, plus the return delay), so one flow's rate is at most window / RTT;
- a per-connection rate cap: the share of the path one flow's losses leave it;
- the aggregate cap of its direction, one queue shared by every connection, 50 ms deep, which
  the flows waiting for room take in turns (up: toward the server, down: back; they may differ);

and the link as a whole stalls (no byte moves for S seconds) and cuts (every connection reset)
on a schedule drawn from a seed. Beyond its sockets' buffers the relay holds at most each
pipe's window; it changes no byte. `link.py` starts one as a process.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import random
import socket
import struct
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Iterator

MB = 1e6
MIB = 1 << 20
MIN_CHUNK, MAX_CHUNK = 4 << 10, 256 << 10
LATE = 0.01  # the relay's own lateness (a busy CPU's) up to this is not charged to the link
QUEUE = 0.05  # seconds of bytes the shared queue of a direction holds: its depth, and the flows' turns in it


@dataclass(frozen=True)
class Profile:
    """A link, in seconds, bytes and bytes per second; None is no cap."""

    delay: float = 0.0  # one way
    jitter: float = 0.0  # each way's delay varies uniformly by up to this much either side
    window: int = 4 * MIB  # bytes in flight per connection per direction (Linux's tcp_rmem ceiling is 6 MiB)
    flow_rate: float | None = None  # per connection per direction
    rate_up: float | None = None  # all connections toward the server together
    rate_down: float | None = None  # all connections back
    stall_every: float | None = None  # mean seconds between stalls (each gap drawn from 0.5x to 1.5x)
    stall_for: float = 0.0
    cut_every: float | None = None  # mean seconds between cuts
    seed: int = 0

    @property
    def rtt(self) -> float:
        return 2 * self.delay

    def describe(self) -> str:
        def rate(r: float | None) -> str:
            return "no cap" if r is None else f"{r / MB:g} MB/s"
        parts = [f"RTT {self.rtt * 1000:g} ms" + (f" (+-{self.jitter * 2000:g})" if self.jitter else ""),
                 f"up {rate(self.rate_up)}", f"down {rate(self.rate_down)}", f"one flow {rate(self.flow_rate)}",
                 f"window {self.window / MIB:g} MiB"]
        if self.stall_every:
            parts.append(f"a {self.stall_for:g} s stall every {self.stall_every:g} s")
        if self.cut_every:
            parts.append(f"a cut every {self.cut_every:g} s")
        return ", ".join(parts)

    def scaled(self, k: float) -> Profile:
        """The same link k times as fast: rates and window times k, delays and schedule unchanged."""
        def times(rate: float | None) -> float | None:
            return None if rate is None else rate * k
        return replace(self, window=max(1, round(self.window * k)), flow_rate=times(self.flow_rate),
                       rate_up=times(self.rate_up), rate_down=times(self.rate_down))


PROFILES = {
    "loopback": Profile(),
    "regional": Profile(delay=0.015, jitter=0.0005, rate_up=100 * MB, rate_down=100 * MB, flow_rate=50 * MB),
    "border": Profile(delay=0.075, jitter=0.002, rate_up=50 * MB, rate_down=50 * MB, flow_rate=4 * MB),
}
PROFILES["border-flaky"] = replace(PROFILES["border"], stall_every=40.0, stall_for=5.0, cut_every=60.0)


def link_profile(name: str | Profile = "loopback", scale: float = 1.0, **overrides) -> Profile:
    """A named profile (or one given), scaled by `scale`, then with `overrides` (Profile's fields;
    `rate` sets both directions' aggregate cap)."""
    base = PROFILES[name] if isinstance(name, str) else name
    if "rate" in overrides:
        rate = overrides.pop("rate")
        overrides = {"rate_up": rate, "rate_down": rate, **overrides}
    return replace(base.scaled(scale) if scale != 1.0 else base, **overrides)


@dataclass(frozen=True, order=True)
class Event:
    at: float  # seconds after the link started
    kind: str  # "stall" or "cut"
    seconds: float = 0.0  # a stall's length


def events(p: Profile) -> Iterator[Event]:
    """The link's stalls and cuts, in time order, forever; the same seed gives the same ones."""
    def kind(name: str, every: float | None, seconds: float) -> Iterator[Event]:
        if not every:
            return
        rng, at = random.Random(f"{p.seed}:{name}"), 0.0
        while True:
            at += every * rng.uniform(0.5, 1.5)
            yield Event(at, name, seconds)
    return heapq.merge(kind("stall", p.stall_every, p.stall_for), kind("cut", p.cut_every, 0.0))


def schedule(p: Profile, horizon: float) -> list[Event]:
    """The events of the link's first `horizon` seconds."""
    return list(itertools.takewhile(lambda e: e.at < horizon, events(p)))


class _Queue:
    """A serialising queue at `rate` bytes/s: reserve(n) says when n more bytes are through it.

    Idle time earns at most `burst` seconds of credit, which a pacer that wakes late spends."""

    def __init__(self, rate: float, burst: float = 0.0):
        self.rate, self.burst, self.free_at = rate, burst, 0.0

    def reserve(self, n: int, now: float) -> float:
        self.free_at = max(self.free_at, now - self.burst) + n / self.rate
        return self.free_at


def _chunk(p: Profile, shared: _Queue | None) -> int:
    """The most a pipe reads at once: 10 ms at its slowest cap, a quarter of the window."""
    rates = [rate for rate in (p.flow_rate, shared and shared.rate) if rate]
    return int(min([MAX_CHUNK, max(MIN_CHUNK, p.window // 4)] + [max(MIN_CHUNK, rate / 100) for rate in rates]))


class _Pipe:
    """One direction of one connection: window, the flow's pace, the shared queue, the delay line."""

    def __init__(self, link: LinkModel, reader: asyncio.StreamReader, source: socket.socket,
                 writer: asyncio.StreamWriter, shared: _Queue | None):
        p = link.profile
        self.link, self.reader, self.writer, self.shared = link, reader, writer, shared
        self.source: socket.socket = source
        self.flow = _Queue(p.flow_rate, burst=0.05) if p.flow_rate else None
        self.chunk = _chunk(p, shared)
        self.in_flight, self.room, self.opened_at = 0, asyncio.Event(), 0.0
        self.line: deque[tuple[float, bytes]] = deque()  # (due, bytes); b"" is the end of the stream
        self.queued, self.last_due = asyncio.Event(), 0.0

    async def read(self) -> None:
        loop, window = asyncio.get_running_loop(), self.link.profile.window
        opened = None  # when the window last opened on bytes already waiting for it
        while True:
            if self.in_flight >= window:
                self.room.clear()
                await self.room.wait()
                opened = self.opened_at
                continue
            if error := self.source.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                # The sender reset the connection. Its reader may not see it for a while (a full
                # one stops reading its socket) and Linux hands a reader what came before the
                # reset first: megabytes on loopback, sent on long after the sender had gone.
                raise ConnectionResetError(error, os.strerror(error))
            asked = loop.time()
            data = await self.reader.read(min(self.chunk, window - self.in_flight))
            now = loop.time()
            if opened is not None and now - asked < 0.001 and now - opened <= LATE:
                now = opened  # they left when it opened, not when this task woke: no lateness adds up per round trip
            else:
                opened = None
            if not data:
                self._push(now + self.link.profile.delay, b"")
                return
            self.in_flight += len(data)
            if self.flow:
                paced = self.flow.reserve(len(data), now)
                if paced > now + 0.001:
                    await asyncio.sleep(paced - now)
                    now = loop.time()
            while self.shared and (ahead := self.shared.free_at - now) > QUEUE:
                await asyncio.sleep(ahead - QUEUE)  # the bottleneck's buffer is full: wait, as TCP would after a loss
                now = loop.time()
            leaves = self.shared.reserve(len(data), now) if self.shared else now
            self._push(leaves + self.link.one_way(), data)

    def _push(self, due: float, data: bytes) -> None:
        self.last_due = max(due, self.last_due)  # jitter never reorders a connection's bytes
        self.line.append((self.last_due, data))
        self.queued.set()

    async def deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.line:
                self.queued.clear()
                await self.queued.wait()
                continue
            now = loop.time()
            wait = max(self.line[0][0], self.link.stalled_until) - now
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            batch: list[bytes] = []
            while self.line and self.line[0][0] <= now and self.line[0][1]:
                due, data = self.line.popleft()
                batch.append(data)
            if batch:
                self.writer.writelines(batch)
                await self.writer.drain()
                # delivered when due, unless the receiver held it up (a late wake-up is not the link's)
                acked = max(due, loop.time() - LATE) + self.link.profile.delay
                loop.call_at(acked, self._acked, sum(map(len, batch)), acked)
            elif self.line[0][0] <= now:  # the end of the stream: half-close, as TCP's FIN
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return

    def _acked(self, n: int, at: float) -> None:
        self.in_flight -= n
        self.opened_at = at
        self.room.set()


@dataclass(eq=False)
class _Connection:
    writers: list[asyncio.StreamWriter]
    tasks: list[asyncio.Task] = field(default_factory=list)

    def reset(self) -> None:
        """Both ends get a reset (RST), not a close."""
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None and sock.fileno() >= 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class LinkModel:
    """The link in this event loop: `await start()` gives the port; `cut()`, `stall(s)`, `await close()`."""

    def __init__(self, target_port: int, link: Profile, target_host: str = "127.0.0.1"):
        self.target, self.profile = (target_host, target_port), link
        self.connections: set[_Connection] = set()
        self.stalled_until, self.started = 0.0, 0.0
        self._jitter = random.Random(f"{link.seed}:jitter")
        self.up = _Queue(link.rate_up) if link.rate_up else None
        self.down = _Queue(link.rate_down) if link.rate_down else None

    async def start(self, sock: socket.socket | None = None, started: float | None = None) -> int:
        """Listens on `sock` (or a new port on 127.0.0.1); the schedule counts from `started`
        (time.monotonic(), the loop's clock), or now."""
        loop = asyncio.get_running_loop()
        self.started = loop.time() if started is None else started
        if sock is None:
            self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=MAX_CHUNK)
        else:
            self.server = await asyncio.start_server(self._accept, sock=sock, limit=MAX_CHUNK)
        self._schedule = asyncio.ensure_future(self._run_schedule())
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._schedule.cancel()
        self.server.close()
        self.cut()
        await self.server.wait_closed()

    def one_way(self) -> float:
        p = self.profile
        return max(0.0, p.delay + self._jitter.uniform(-p.jitter, p.jitter)) if p.jitter else p.delay

    def stall(self, seconds: float) -> None:
        """No byte moves on any connection for `seconds`; what was queued goes on after."""
        self.stalled_until = max(self.stalled_until, asyncio.get_running_loop().time() + seconds)
        for queue in (self.up, self.down):
            if queue:
                queue.free_at = max(queue.free_at, self.stalled_until)

    def cut(self) -> None:
        """Every connection open now is reset at both ends; new ones work."""
        for connection in list(self.connections):
            connection.reset()
        self.connections.clear()

    async def _run_schedule(self) -> None:
        loop = asyncio.get_running_loop()
        for event in events(self.profile):
            await asyncio.sleep(max(0.0, self.started + event.at - loop.time()))
            if event.kind == "stall":
                self.stall(event.seconds)
            else:
                self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection([writer])
        self.connections.add(connection)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target, limit=MAX_CHUNK)
        except OSError:
            connection.reset()
            self.connections.discard(connection)
            return
        connection.writers.append(up_writer)
        for w in (writer, up_writer):
            # A relay sends each write as it comes, as a router forwards packets. asyncio sets TCP_NODELAY
            # only on sockets it makes with proto IPPROTO_TCP; those accepted from a listener made with
            # proto 0 (link.py's) would hold small writes for an acknowledgement (40 ms on loopback).
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if connection not in self.connections:  # cut while connecting
            connection.reset()
            return
        up = _Pipe(self, reader, writer.get_extra_info("socket"), up_writer, self.up)
        down = _Pipe(self, up_reader, up_writer.get_extra_info("socket"), writer, self.down)
        connection.tasks = [asyncio.ensure_future(c) for c in (up.read(), up.deliver(), down.read(), down.deliver())]
        try:
            await asyncio.gather(*connection.tasks)
        except (OSError, asyncio.IncompleteReadError):
            connection.reset()  # one end reset: so is the other
        except asyncio.CancelledError:
            pass  # cut
        finally:
            self.connections.discard(connection)
            for task in connection.tasks:
                task.cancel()
            for w in connection.writers:
                w.close()
