"""The link model (tests/services/link.py) measured from outside, the way iperf and ping would:
each property it claims is within 10% of what real sockets through it see.

Rates are scaled down to a few MB/s so a busy 2-CPU machine still delivers them exactly.
Rates are counted where the bytes arrive, after a warm-up, over 1.5 s or more.
"""
from __future__ import annotations

import asyncio
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from tests.services import link as link_py
from tests.services.link import MB, PROFILES, Event, Profile, link_profile, schedule, start_link

pytestmark = pytest.mark.alone  # each test measures delays and rates to 10%: with the machine to itself

BLOCK = bytes(range(256)) * 256  # 64 KiB
# Every probe socket holds 4 MiB each way in the kernel, as iperf's do: a probe that this busy
# machine leaves unscheduled for a moment neither starves the link nor backs it up.
BUFFER = 4 << 20


def buffered(sock: socket.socket) -> socket.socket:
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, BUFFER)
    return sock


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = buffered(socket.socket())
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


class Probe:
    """The server behind the link, in a thread of its own. A connection's first byte says what it wants:
    e echoes, b answers each byte with a burst of four, f sends without end, s<id> counts what arrives, t<id> reads timestamps and keeps each one's age."""

    def __init__(self):
        self.arrivals: dict[int, list[tuple[float, int]]] = {}
        self.ages: dict[int, list[float]] = {}
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, sock=buffered(socket.create_server(("127.0.0.1", 0)))))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            mode = await reader.readexactly(1)
            if mode == b"e":
                while data := await reader.read(1 << 16):
                    writer.write(data)
                    await writer.drain()
            elif mode == b"b":  # a burst: each byte answered by four small writes, 1 ms apart, as a server sends records
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while await reader.read(1):
                    for _ in range(4):
                        writer.write(b"r")
                        await writer.drain()
                        await asyncio.sleep(0.001)
            elif mode == b"f":
                while True:
                    writer.write(BLOCK)
                    await writer.drain()
            elif mode == b"s":
                record = self.arrivals.setdefault(struct.unpack("!q", await reader.readexactly(8))[0], [])
                while data := await reader.read(1 << 16):
                    record.append((time.monotonic(), len(data)))
            elif mode == b"t":
                ages = self.ages.setdefault(struct.unpack("!q", await reader.readexactly(8))[0], [])
                while stamp := await reader.readexactly(8):
                    ages.append(time.monotonic() - struct.unpack("!d", stamp)[0])
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()


@pytest.fixture(scope="module")
def probe():
    return Probe()


@pytest.fixture
def linked(probe):
    links = []

    def start(link: Profile):
        links.append(start_link(probe.port, profile=link))
        return links[-1]
    yield start
    for link in links:
        link.stop()


def rate(arrivals: list[tuple[float, int]], start: float, end: float) -> float:
    return sum(n for t, n in arrivals if start < t <= end) / (end - start)


def reset(writer: asyncio.StreamWriter) -> None:
    """Closed with a reset: what the kernel still holds to send (megabytes on loopback) is dropped,
    not left to flow through the link and into the next measurement."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


_ids = iter(range(1, 1 << 62))


async def flows(probe: Probe, port: int, up: int = 0, down: int = 0, warm: float = 0.6, seconds: float = 1.8):
    """`up` flows toward the server and `down` back from it at once; each one's rate, in MB/s."""
    ids, downs, tasks = [next(_ids) for _ in range(up)], [[] for _ in range(down)], []

    async def send(flow: int) -> None:
        _, writer = await connect(port)
        try:
            writer.write(b"s" + struct.pack("!q", flow))
            while True:
                writer.write(BLOCK)
                await writer.drain()
        finally:
            reset(writer)

    async def receive(record: list) -> None:
        reader, writer = await connect(port)
        try:
            writer.write(b"f")
            while data := await reader.read(1 << 16):
                record.append((time.monotonic(), len(data)))
        finally:
            reset(writer)

    start = time.monotonic()
    tasks = [asyncio.ensure_future(send(i)) for i in ids] + [asyncio.ensure_future(receive(r)) for r in downs]
    await asyncio.sleep(warm + seconds + 0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    window = (start + warm, start + warm + seconds)
    return ([rate(probe.arrivals[i], *window) / MB for i in ids], [rate(r, *window) / MB for r in downs])


async def pings(port: int, count: int, mode: bytes = b"e", answer: int = 1) -> list[float]:
    """Round trips of one byte; `mode` b"b": each answered by a burst of `answer` small writes."""
    reader, writer = await connect(port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.write(mode)
    times = []
    for _ in range(count + 1):
        sent = time.monotonic()
        writer.write(b"x")
        await reader.readexactly(answer)
        times.append(time.monotonic() - sent)
    writer.close()
    return times[1:]  # the first one also opened the link's connection to the server


def near(measured: float, expected: float, within: float = 0.10) -> bool:
    return abs(measured - expected) <= within * expected


def test_one_flow_is_held_to_window_over_rtt(probe, linked):
    link = linked(Profile(delay=0.05, window=256 << 10))
    expected = (256 << 10) / 0.1 / MB  # 2.62 MB/s
    (up,), _ = asyncio.run(flows(probe, link.port, up=1))
    _, (down,) = asyncio.run(flows(probe, link.port, down=1))
    assert near(up, expected) and near(down, expected), (up, down, expected)


def test_round_trip_and_jitter(probe, linked):
    link = linked(Profile(delay=0.04))
    rtt = statistics.median(asyncio.run(pings(link.port, 12)))
    assert near(rtt, 0.08), rtt

    jittery = linked(Profile(delay=0.1, jitter=0.04, seed=3))

    async def stamps(flow: int) -> None:
        _, writer = await connect(jittery.port)
        writer.write(b"t" + struct.pack("!q", flow))
        for _ in range(16):
            writer.write(struct.pack("!d", time.monotonic()))
            await asyncio.sleep(0.1)  # wider than the jitter's range: no stamp waits behind the one before
        writer.close()

    async def many() -> list[int]:
        ids = [next(_ids) for _ in range(40)]
        await asyncio.gather(*(stamps(i) for i in ids))
        await asyncio.sleep(0.3)
        return ids
    ages = [age for i in asyncio.run(many()) for age in probe.ages[i][1:]]
    # one way: 100 ms on average, spread uniformly over 60 to 140 ms (a standard deviation of 40/sqrt(3) ms)
    assert len(ages) > 500
    assert near(statistics.mean(ages), 0.1), statistics.mean(ages)
    assert near(statistics.stdev(ages), 0.04 / 3 ** 0.5), statistics.stdev(ages)
    assert 0.059 < min(ages) and max(ages) < 0.15, (min(ages), max(ages))


def test_small_writes_come_through_at_the_round_trip(probe, linked):
    """The link relays each write as it comes (as a router does): small writes sent one after another are
    not held back waiting for the first one's acknowledgement (Nagle's rule on a relay's own socket
    would add a delayed ACK, 40 ms, to every burst of small writes)."""
    link = linked(Profile(delay=0.02))
    took = statistics.median(asyncio.run(pings(link.port, 8, b"b", 4)))
    assert near(took, 0.04 + 0.003, within=0.15), took  # the round trip and the burst's own 3 ms


def test_regional_one_flow_takes_half_the_link_and_three_share_it(probe, linked):
    regional = link_profile("regional", scale=0.05)  # 5 MB/s each way, one flow at most 2.5
    link = linked(regional)
    (one,), _ = asyncio.run(flows(probe, link.port, up=1))
    assert near(one, 2.5), one
    ups, downs = asyncio.run(flows(probe, link.port, up=3, down=3))
    assert near(sum(ups), 5.0) and near(sum(downs), 5.0), (ups, downs)
    assert all(flow <= 2.5 * 1.1 for flow in ups + downs), (ups, downs)


def test_each_direction_has_its_own_cap(probe, linked):
    link = linked(Profile(delay=0.01, rate_up=4 * MB, rate_down=2 * MB))
    ups, downs = asyncio.run(flows(probe, link.port, up=2, down=2))
    assert near(sum(ups), 4.0) and near(sum(downs), 2.0), (ups, downs)


def test_border_from_the_command_line_round_trip_and_one_flow(probe):
    border = link_profile("border", scale=0.5)  # one flow at most 2 MB/s; its window allows 14
    assert border.rtt == 0.15 and border.flow_rate == 2 * MB and border.window / border.rtt > 6 * border.flow_rate
    process = subprocess.Popen([sys.executable, link_py.__file__, "--to", str(probe.port), "--profile", "border",
                                "--scale", "0.5"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        rtt = statistics.median(asyncio.run(pings(port, 6)))
        assert near(rtt, 0.15), rtt
        (one,), (back,) = asyncio.run(flows(probe, port, up=1, down=1))
        assert near(one, 2.0) and near(back, 2.0), (one, back)
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def test_command_line_flags_override_the_scaled_profile():
    argv = ("--to 5 --profile border --scale 0.1 --flow-rate 1 --window 256KiB --rtt-ms 40 --jitter 1 "
            "--stall-every 3 --stall-for 0.5 --cut-every 7 --seed 5 --rate-down 2").split()
    assert link_py.parse(argv) == (5, Profile(delay=0.02, jitter=0.001, window=256 << 10, flow_rate=1 * MB,
                                           rate_up=5 * MB, rate_down=2 * MB, stall_every=3.0, stall_for=0.5,
                                           cut_every=7.0, seed=5))
    # the first callers' form: a cap each way and a round trip
    assert link_py.parse("--to 5 --mb-per-s 20 --rtt-ms 60".split())[1] == Profile(delay=0.03, rate_up=20 * MB,
                                                                               rate_down=20 * MB)
    assert link_py.parse("--to 5 --profile regional --window 64k --delay 5".split())[1] == replace(
        PROFILES["regional"], window=64000, delay=0.005)


def test_stalls_and_cuts_come_on_the_seeded_schedule(probe, linked):
    flaky = Profile(delay=0.01, flow_rate=1 * MB, stall_every=1.5, stall_for=0.6, cut_every=3.0, seed=8)
    horizon = 4.6
    planned = schedule(flaky, horizon)
    # this seed's events are apart from each other, so each shows on its own
    assert [(round(e.at, 2), e.kind) for e in planned] == [
        (1.18, "stall"), (2.35, "stall"), (3.16, "cut"), (3.83, "stall")]
    link = linked(flaky)
    arrivals, resets = [], []

    async def follow() -> None:
        while time.monotonic() < link.started + horizon:
            reader, writer = await connect(link.port)
            writer.write(b"f")
            try:
                while await reader.read(1 << 16):
                    arrivals.append(time.monotonic() - link.started)
            except ConnectionResetError:
                resets.append(time.monotonic() - link.started)

    async def bounded() -> None:
        try:
            await asyncio.wait_for(follow(), horizon + 0.2)
        except asyncio.TimeoutError:
            pass
    asyncio.run(bounded())
    gaps = [(a, b - a) for a, b in zip(arrivals, arrivals[1:]) if b - a > 0.2]
    stalls = [e for e in planned if e.kind == "stall"]
    assert len(gaps) == len(stalls), (gaps, planned)
    for (at, gap), stall in zip(gaps, stalls):
        assert abs(at - stall.at) < 0.06 and near(gap, stall.seconds), (at, gap, stall)
    assert len(resets) == 1 and abs(resets[0] - 3.16) < 0.06, resets
    assert arrivals[-1] > 4.4, "no bytes came through the connection opened after the cut"
    again = schedule(Profile(stall_every=1.5, stall_for=0.6, cut_every=3.0, seed=8), 60)
    assert again == schedule(flaky, 60) and again != schedule(Profile(stall_every=1.5, stall_for=0.6,
                                                                       cut_every=3.0, seed=9), 60)


def test_border_flaky_schedule_and_manual_cut(probe, linked):
    flaky = PROFILES["border-flaky"]
    assert (flaky.stall_every, flaky.stall_for, flaky.cut_every) == (40.0, 5.0, 60.0)
    hour = schedule(flaky, 3600)
    stalls, cuts = [e for e in hour if e.kind == "stall"], [e for e in hour if e.kind == "cut"]
    assert near(len(stalls), 90, 0.15) and near(len(cuts), 60, 0.15), (len(stalls), len(cuts))
    assert hour[0] == Event(at=hour[0].at, kind="stall", seconds=5.0)

    link = linked(Profile(delay=0.005))

    async def cut_then_again() -> tuple[str, list[float]]:
        reader, writer = await connect(link.port)
        writer.write(b"e")
        writer.write(b"y")
        await reader.readexactly(1)
        link.cut()
        try:
            await asyncio.wait_for(reader.read(1), 5)
            seen = "closed"
        except ConnectionResetError:
            seen = "reset"
        return seen, await pings(link.port, 3)
    seen, after = asyncio.run(cut_then_again())
    assert seen == "reset" and len(after) == 3
