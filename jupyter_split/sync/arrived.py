"""Bytes of ranged reads (of S3 and of SFTP) as they arrive: `Arrived` keeps those that came ahead of
their reader in order; `Range` is one ranged request's, handed on as they come, and cut in two while
it is still coming.

A ranged GET over a far link's flow takes seconds, and its first bytes go on meanwhile (else the
copy's other link waits for it). While one is still coming, it can give the second half of what it
still has to bring to another request on another flow (`Range.cut`): an object's end then does not
ride the one flow of its last range (`s3read.S3Ranges`).
"""
from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from typing import Callable


class Arrived:
    """Arrived pieces, not read yet, in order; `size` bytes of them. `take` joins only what it returns."""

    def __init__(self) -> None:
        self._pieces: deque[bytes] = deque()
        self.size = 0

    def add(self, data: bytes) -> None:
        if data:
            self._pieces.append(data)
            self.size += len(data)

    def take(self, n: int) -> bytes:
        """The next `n` bytes, or all there are if fewer."""
        out, got = [], 0
        while self._pieces and got < n:
            piece = self._pieces.popleft()
            if got + len(piece) > n:
                self._pieces.appendleft(piece[n - got:])
                piece = piece[:n - got]
            out.append(piece)
            got += len(piece)
        self.size -= got
        return b"".join(out)


SPLIT = 256 << 10  # a range in flight is cut in two only if each half brings this much or more


class Range:
    """The bytes `first` to `last` of one request, as they arrive (`put`) and as they are taken (`take`).

    `cond` is shared by all ranges of one reader: it waits for the first in line, and wakes when
    any of them moves (one that ended frees its flow for half of a range still coming).
    """

    def __init__(self, first: int, last: int, cond: threading.Condition):
        self.first, self.last, self.got = first, last, 0
        self.future: concurrent.futures.Future | None = None
        self._chunks: list[bytes] = []
        self._ended, self._error = False, None
        self._cond = cond

    @property
    def left(self) -> int:
        """Bytes it still has to bring."""
        return self.last + 1 - self.first - self.got

    @property
    def coming(self) -> bool:
        """Whether its request still brings bytes."""
        return not self._ended

    def put(self, data: bytes) -> bool:
        """Hand on bytes that arrived (those past the range, if `cut` shortened it, dropped); whether
        more are wanted."""
        with self._cond:
            data = data[:self.left]
            if data:
                self._chunks.append(data)
                self.got += len(data)
                self._cond.notify_all()
            return self.left > 0

    def cut(self) -> Range | None:
        """Shorten the range to half of what it still has to bring, if that is SPLIT bytes or more;
        the range of the rest (for another request), or None."""
        with self._cond:
            left = self.left
            if self._ended or left < 2 * SPLIT:
                return None
            rest = Range(self.last + 1 - left // 2, self.last, self._cond)
            self.last = rest.first - 1
            return rest

    def end(self, error: BaseException | None = None) -> None:
        """Its request is over (with `error`, taken by the reader in its turn)."""
        with self._cond:
            self._ended, self._error = True, error
            self._cond.notify_all()

    def take(self, waiting: Callable[[], None]) -> tuple[bytes, bool]:
        """What arrived since the last take (waiting for some, and calling `waiting` each time before
        it waits: when any range of the reader moved), and whether that was the last of it."""
        with self._cond:
            while not self._chunks and not self._ended:
                waiting()
                self._cond.wait()
            if self._error is not None:
                raise self._error
            data = b"".join(self._chunks)
            self._chunks.clear()
            return data, self._ended
