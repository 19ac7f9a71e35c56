"""A copy to or from an SFTP server at the link's width: several SSH connections, big files in ranges.

A long, lossy link gives each TCP flow only a share (losses halve a flow's window; a
border link may hold one flow to a few MB/s however wide it is), and every SFTP session
of one SSH connection rides that one flow. So big files are written and read over several
SSH connections (each with its own sessions), every file in pieces dealt across them, each
at its offset (`ranges.py`), while the bytes are still hashed once, in order, on the way.

The width adapts, as TCP's slow start does with its window: it starts at START connections
and doubles while the connections it has each still carry most of what one flow carried at
its best (EFFICIENT): on a link that holds each flow to a share, every new connection adds
that share until the link's aggregate cap is reached, and then the share per connection falls
and the width holds, up to the cap (`[sync] max_connections`). It is judged on the bytes the
server confirmed (pieces ended), over two steps, so a step's noise is not read as a gain or a
loss. Two steps in a row in which next to nothing moved (a stall) or a failure halve it. The width a
copy ends at is kept for the server (host and port, in the data directory, for REMEMBERED seconds): the
next copy there starts at it, as TCP keeps a path's metrics, instead of climbing again from START
(about 3 s of a 40 s push through border x 0.25, its connections opening while it plans). A dropped link
kills every connection: the pool drops the dead ones and the next opens reconnect (the engine
retries with backoff).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time
from typing import Any, Callable

from ..config import MAX_CONNECTIONS  # noqa: F401  (the default cap: `[sync] max_connections`)
from ..paths import data_dir
from .sftp_files import SftpFile, SftpStreams

START = 8
STEP = 1.0            # seconds of sending between two readings of the throughput
JUDGED = 2            # readings at one width before it is judged (one reading of pieces ending in bunches is noisy)
EFFICIENT = 0.6       # the width doubles while each connection carries this share of the best one flow did
OPENING = 8           # connections opened at once
LANES_OPENING = 4     # files whose lanes (one on each connection of the width) open at once
STALL = 0.1           # two readings under this share of the best the width carried: a stall, back off
REMEMBERED = 24 * 3600  # seconds a width learnt for a server is where the next copy there starts
WIDTHS_FILE = "widths.json"
# A chunk goes out in pieces, each to the lane (connection) with the fewest in flight: pieces,
# not whole chunks, so a few big files still spread over every flow, and a connection never
# queues more than CONNECTION_PENDING pieces. What a connection queues, every request on it waits
# behind: a file's open, its close and its rename. So a piece is PIECE bytes only while pieces
# that size are confirmed within QUEUED seconds of being handed out (timed as they end, the wait
# behind the piece queued before them included; before that, a piece is taken to need a round
# trip at least, as long as a file's open took), and FAR_PIECE on a slower link. With 1 MiB pieces
# through border x 0.25 a connection held 2 MiB, 2.6 s at a flow's share: new files' lanes opened
# while the link drained (per-second readings fell to a third every few seconds; 0.84 of the cap
# while sending). 256 KiB pieces queue 0.5 MiB there, still over three times a flow's bytes in
# flight (its round trip times its share), and the link stays full (0.91 while sending); on
# loopback 256 KiB pieces cost a 400 MiB push 14% (more pieces, each a request and a callback).
# A link whose flows carry more makes the width grow instead. A file has at most FILE_PENDING pieces in flight, so a killed
# copy's `.part` may have holes in its last RANGED_SLACK bytes only: a part of a file of
# RANGED_MIN bytes or more resumes that far back (plan.py); a smaller part is trusted by its
# size, and a hole there fails the file's sha256, which sends it again whole.
PIECE = 1 << 20
FAR_PIECE = 256 << 10
QUEUED = 0.5
CONNECTION_PENDING = 2
FILE_PENDING = 32
RANGED_SLACK = FILE_PENDING * PIECE
RANGED_MIN = 4 * RANGED_SLACK


class Width:
    """How many connections a copy should use now: measured, doubled while it pays, cut on stalls."""

    def __init__(self, cap: int = MAX_CONNECTIONS, start: int = START, step: float | None = None):
        self.cap = max(1, cap)
        self.target = min(start, self.cap)
        self.history: list[tuple[int, float]] = []  # (width, MB/s) of every reading, for reports and tests
        # STEP read now, not when the module loaded: a test scales the clock with the link
        self._step, self._bytes, self._since = step or STEP, 0, time.monotonic()
        self._rates: list[float] = []  # the readings at this width
        self._best = 0.0  # the most one connection carried (bytes/s), over a judged width
        self._low = False  # the last reading was next to nothing
        self._per_byte: float | None = None  # seconds a piece took to be confirmed, per byte (moving average)
        self.live: Callable[[], int] = lambda: self.target  # connections open now (the pool sets it)
        self._lock = threading.Lock()

    def sent(self, n: int, seconds: float | None = None) -> None:
        """Count `n` bytes the server confirmed (a piece ended, `seconds` after it was handed out);
        every STEP seconds, read the throughput."""
        with self._lock:
            self._bytes += n
            if seconds and n >= FAR_PIECE // 2:  # a file's short last piece is mostly its round trip
                took = seconds / n
                self._per_byte = took if self._per_byte is None else 0.8 * self._per_byte + 0.2 * took
            now = time.monotonic()
            if now - self._since < self._step:
                return
            rate = self._bytes / (now - self._since)
            self._bytes, self._since = 0, now
            if self.live() < self.target:
                self._rates.clear()
                return  # the last growth is still connecting: judge it once it carries bytes
            self.history.append((self.target, rate / 1e6))
            self._judge(rate)

    def _judge(self, rate: float) -> None:
        # a stall: next to nothing moved for two readings in a row (one such reading is often
        # only the files in flight ending together, and new ones opening)
        low = rate < STALL * self._best * self.target
        if low and self._low:
            self._halve()
            return
        self._low = low
        self._rates.append(rate)
        each = sum(self._rates) / len(self._rates) / self.target
        grow = each >= EFFICIENT * self._best and self.target < self.cap
        # one reading is noisy: it may grow the width (a wrong guess costs a connection, not bytes),
        # but holding it takes JUDGED readings
        if not grow and len(self._rates) < JUDGED:
            return
        self._rates.clear()
        if grow:
            self.target = min(self.cap, self.target * 2)
        self._best = max(self._best, each)

    def round_trip(self, seconds: float) -> None:
        """A request took `seconds` to be answered (a file's open): until pieces are timed, a piece is
        taken to need at least that long."""
        with self._lock:
            if self._per_byte is None:
                self._per_byte = seconds / FAR_PIECE

    @property
    def piece(self) -> int:
        """The bytes of a piece now: PIECE while pieces of that size would be confirmed within QUEUED
        seconds of being handed out (at the pace pieces lately were, queue included), else FAR_PIECE."""
        per_byte = self._per_byte
        return PIECE if per_byte is not None and per_byte * PIECE <= QUEUED else FAR_PIECE

    @property
    def learnt(self) -> int | None:
        """The width, if it was read at least once since it last changed, on a far link (pieces of
        FAR_PIECE); else None. On a near link the climb from START costs milliseconds, and starting a
        small copy at a big copy's width would only open connections it cannot use."""
        with self._lock:
            read = self.history and self.history[-1][0] == self.target and not self._low
        return self.target if read and self.piece == FAR_PIECE else None

    def back_off(self) -> None:
        """A failure (a dropped link, a stall that broke a connection): halve the width."""
        with self._lock:
            self._halve()

    def _halve(self) -> None:
        # what one flow carries is measured again: a cut may have changed the path
        self.target = max(1, self.target // 2)
        self._rates, self._best, self._low, self._bytes, self._since = [], 0.0, False, 0, time.monotonic()
        self._per_byte = None  # small pieces again until pieces are timed: a cut may have changed the path


def remembered_width(server: str) -> int | None:
    """The width the last copy to or from `server` ("host:port") ended at, if it was learnt within
    REMEMBERED seconds; None otherwise (or when the record cannot be read)."""
    try:
        found = json.loads((data_dir() / WIDTHS_FILE).read_text()).get(server)
        width, at = int(found["width"]), float(found["at"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return width if width >= 1 and 0 <= time.time() - at <= REMEMBERED else None


def remember_width(server: str, width: int) -> None:
    """Keep `width` as the one the next copy to or from `server` starts at. Best effort: a copy
    never fails for it, and two copies ending at once keep one of their widths."""
    path = data_dir() / WIDTHS_FILE
    try:
        known = json.loads(path.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    now = time.time()
    known = {k: v for k, v in known.items() if _fresh(v, now)}
    known[server] = {"width": width, "at": now}
    temp = path.with_name(f"{WIDTHS_FILE}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(known))
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)


def _fresh(record: Any, now: float) -> bool:
    try:
        return 0 <= now - float(record["at"]) <= REMEMBERED
    except (TypeError, ValueError, KeyError):
        return False


class Connections:
    """The SSH connections a copy writes big files on, each an SftpStreams (its own sessions).

    The first is the location's own filesystem; `connect()` makes another one with the same
    storage options (host keys checked the same way) and no fsspec instance cache.
    """

    def __init__(self, fs: Any, connect: Callable[[], Any], width: Width):
        self.width = width
        self._connect = connect
        self._streams: list[SftpStreams] = [SftpStreams(fs)]
        self._opening: list[concurrent.futures.Future] = []
        # a doubling opens its connections at once (each takes round trips), fewer than sshd's
        # MaxStartups (10) lets in before they log in
        self._opener = concurrent.futures.ThreadPoolExecutor(max_workers=OPENING)
        # the lanes of the files sent together, all at once: each open waits a round trip on a session
        # that is up (no MaxStartups there); with OPENING threads for every file's 15, the last files'
        # lanes joined seconds after the first's over a far link
        self._lane_opener = concurrent.futures.ThreadPoolExecutor(max_workers=LANES_OPENING * width.cap)
        self._lock = threading.Lock()
        self.turns = threading.Condition()  # a piece ended: a writer waiting for room may go
        # no lock: the width asks while it holds its own, and a harvest calls the width under ours
        width.live = lambda: sum(1 for s in list(self._streams) if not s.closed)
        self.opened = 1  # connections made over the copy, reconnections included

    def open(self, path: str, offset: int = 0, avoid: tuple[SftpStreams, ...] = (), *,
             read: bool = False) -> SftpFile | None:
        """`path` open (to read with `read`, else to write from `offset`) on the least busy
        connection not in `avoid`; None when no session is to be had (the caller goes through sshfs)."""
        streams = self._least_busy(avoid)
        if streams is None:
            return None
        started = time.monotonic()
        opened = streams.open(path, offset, read=read)
        self.width.round_trip(time.monotonic() - started)
        return opened

    def open_soon(self, path: str, offset: int, avoid: tuple[SftpStreams, ...], count: int, *,
                  read: bool = False) -> list[tuple[SftpStreams, concurrent.futures.Future]]:
        """`path` opening (as `open`) on up to `count` live connections outside `avoid`, the least busy
        first, all at once and without waiting: each future gives its file (None: no session to be had)
        or fails (a failed connection is marked broken). A file's pieces go out on the lanes it has
        while the others open: a fresh connection's first open waits for its sessions (round trips)."""
        with self._lock:
            self._harvest()
            self._grow()
            choices = sorted((s for s in self._streams if s not in avoid and not s.closed), key=lambda s: s.busy)
        return [(s, self._lane_opener.submit(s.open, path, offset, read=read)) for s in choices[:count]]

    def ended(self, streams: SftpStreams, done: concurrent.futures.Future, size: int, seconds: float) -> None:
        """A piece of `size` bytes on `streams` ended (moved or failed) `seconds` after it was handed
        out: the width counts it, and its room goes to a waiting writer."""
        failure = done.exception()
        if isinstance(failure, ConnectionError):
            streams.broken = True  # the link dropped: no new file or piece goes there
        elif failure is None:
            self.width.sent(size, seconds)
        with self.turns:
            streams.in_flight -= 1
            self.turns.notify_all()

    def start_soon(self) -> None:
        """Open the sessions of the first connection and the connections the width wants, without waiting."""
        self._streams[0].start_soon()
        with self._lock:
            self._grow()

    def revive(self, fs: Any) -> None:
        """After a dropped link: forget the dead connections, the location's new one first."""
        with self._lock:
            self._harvest()
            dead = [s for s in self._streams if s.closed]
            self._streams = [SftpStreams(fs)] + [s for s in self._streams if not s.closed and s._fs is not fs]
            self.opened += 1
        for streams in dead:
            streams.close()
        self.width.back_off()

    def prune(self) -> None:
        """Forget the connections of our own found dead, and the sessions of the location's own
        if they are (it is replaced by `revive` when the connection itself is)."""
        with self._lock:
            self._harvest()
            dead = [s for s in self._streams[1:] if s.closed]
            self._streams = [s for s in self._streams if s not in dead]
            if self._streams and self._streams[0].broken:
                dead.append(self._streams[0])
                self._streams[0] = SftpStreams(self._streams[0]._fs)
        for streams in dead:
            streams.close()

    def close(self) -> None:
        """Close every connection this pool made, and the sessions on the location's own."""
        with self._lock:
            for opening in self._opening:
                concurrent.futures.wait([opening])
            self._harvest()
            streams, self._streams = self._streams, []
        self._opener.shutdown(wait=True)
        self._lane_opener.shutdown(wait=True)
        for i, s in enumerate(streams):
            s.close()
            if i and not s.closed:  # our own connections; the location's stays in fsspec's cache
                try:  # on its event loop's thread, after the sessions' exits: asyncssh is not thread-safe
                    s._fs.loop.call_soon_threadsafe(s._fs.client.close)
                except RuntimeError:
                    pass  # the loop is gone already, and the connection with it

    @property
    def live(self) -> int:
        """Connections open now."""
        with self._lock:
            return sum(1 for s in self._streams if not s.closed)

    def _least_busy(self, avoid: tuple[SftpStreams, ...]) -> SftpStreams | None:
        with self._lock:
            self._harvest()
            self._grow()
            choices = [s for s in self._streams if s not in avoid and not s.closed]
        # one whose sessions are open first: a file opens there in one round trip
        return min(choices, key=lambda s: (not s.ready, s.busy)) if choices else None

    def _grow(self) -> None:
        # open connections in the background up to the width: a copy never waits on a handshake
        while len(self._streams) + len(self._opening) < self.width.target:
            self._opening.append(self._opener.submit(self._open_connection))

    def _open_connection(self) -> SftpStreams:
        # its sessions open as soon as it is up, not when a file first asks for one (round trips later)
        streams = SftpStreams(self._connect())
        streams.start_soon()
        return streams

    def _harvest(self) -> None:
        for opening in [f for f in self._opening if f.done()]:
            self._opening.remove(opening)
            try:
                streams = opening.result()
            except Exception:
                self.width.back_off()  # the server or the link refuses more: stay narrower
                continue
            self._streams.append(streams)
            self.opened += 1
