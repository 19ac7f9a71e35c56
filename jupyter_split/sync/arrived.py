"""Bytes that arrived ahead of their reader (ranged reads of S3 and of SFTP), kept in order."""
from __future__ import annotations

from collections import deque


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
