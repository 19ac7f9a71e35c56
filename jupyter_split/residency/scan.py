"""The content scanner at the border: personal information in what is about to leave.

A second line behind labels: files, `--in`/`--out` variables' pickled bytes and W&B files
bound for another jurisdiction are read as bytes (archives opened, safetensors payloads
skipped: `scan_archive`) and searched for the kinds of `scan_kinds` and the custom
patterns of `[policy.scan]`. A finding carries a masked form and a sha256, never the value.

    scanner = Scanner.for_site(config.policy, "sg")    # None where scanning is off
    result = scanner.scan_file(handle, where="data/people.zip", size=nbytes)
    result.findings, result.unscannable

The matcher is RE2 (google-re2) when installed, else Python's `re` with the same patterns
and the same results, only slower.
"""
from __future__ import annotations

import functools
import io
from typing import Any, BinaryIO, Callable, Iterable

from .findings import CHUNK, Finding, ScanResult
from .matcher import Matcher, compile_pattern
from .scan_kinds import ADDRESSES, BUILTIN, EMAIL, MAX_VALUE, NUMBERS, Value, address_values, number_values

FIRST_BUFFER = 64 << 10  # the search buffer's first size (it grows to CHUNK)
# A value (or custom match) that spans two chunks is seen whole in the next one: the reader
# keeps this much after the last position it reported from. A custom match longer than
# this can be missed at a chunk boundary.
OVERLAP = 4096
LEFT = 256  # bytes kept before the next scan's start, for the validators' look behind
assert OVERLAP > MAX_VALUE and LEFT > 130


class Scanner:
    """Scans bytes for the enabled built-in kinds and custom patterns. Thread-safe; reuse it."""

    def __init__(self, kinds: Iterable[str] = BUILTIN, patterns: dict[str, str] | None = None,
                 depth: int = 3, max_findings: int = 20) -> None:
        self.kinds = frozenset(kinds)
        self.patterns = dict(patterns or {})
        self.depth = depth
        self.max_findings = max_findings
        # each pass: a matcher, and what its matches are (where the value begins, where to go on, the values)
        passes: list[tuple[Matcher, Callable[..., tuple[int, int, list[Value]]]]] = []
        if EMAIL in self.kinds:
            passes.append((compile_pattern(ADDRESSES), address_values))
        if self.kinds:  # (numbers, and wide text of every kind)
            passes.append((compile_pattern(NUMBERS), functools.partial(number_values, self._narrow)))
        self._narrow_passes = list(passes)
        for name, pattern in self.patterns.items():
            passes.append((compile_pattern(pattern.encode()), functools.partial(_custom_values, name)))
        self._passes = passes

    def _narrow(self, data: bytes) -> list[Value]:
        # the built-in passes over a short narrow text (read out of wide text): its values, in order
        found: list[Value] = []
        for matcher, values_of in self._narrow_passes:
            pos = 0
            while (spans := matcher.search(data, pos)) is not None:
                _, pos, values = values_of(data, spans, pos, len(data))
                found += values
        return found

    @classmethod
    def for_site(cls, policy: Any, site: str | None) -> "Scanner | None":
        """The scanner `[policy.scan]` sets for data bound to `site` (None: unknown), or None where it is off."""
        from ..config import ScanPolicy

        scan = getattr(policy, "scan", None) or ScanPolicy()
        rules = scan.sites.get(site) if site else None
        enabled = scan.enabled if rules is None or rules.enabled is None else rules.enabled
        if not enabled:
            return None
        disabled = set(scan.disable) | set(rules.disable if rules else ())
        patterns = {**scan.patterns, **(rules.patterns if rules else {})}
        kinds = tuple(kind for kind in BUILTIN if kind not in disabled)
        custom = tuple(sorted((name, regex) for name, regex in patterns.items() if name not in disabled))
        return _cached(kinds, custom, scan.depth, scan.max_findings)

    def scan_file(self, handle: BinaryIO, where: str, size: int | None = None) -> ScanResult:
        """Scan a binary file object read front to back (it need not be seekable)."""
        from .scan_archive import walk

        result = ScanResult(limit=self.max_findings)
        walk(self, handle, where, size, result)
        return result

    def scan_bytes(self, data: bytes, where: str) -> ScanResult:
        """Scan bytes in memory (a pickled variable, a small file), archives opened as for files."""
        return self.scan_file(io.BytesIO(data), where, len(data))

    def scan_text(self, reader: Any, where: str, result: ScanResult, base: int = 0) -> None:
        """Scan `reader`'s bytes as they are (no archive opened), in chunks, into `result`.

        Each pass (addresses, numbers, each custom pattern) resumes where it stopped, so
        the findings are those of one search over the whole stream: a value across a chunk
        boundary is found once. Offsets count from `base`.
        """
        resume = [0] * len(self._passes)  # per pass: the stream position its search goes on from
        first = len(result.findings)
        try:
            self._scan_chunks(reader, where, result, base, resume)
        finally:  # the passes report in turn: in the order of the bytes, for the reader of a report
            result.findings[first:] = sorted(result.findings[first:], key=lambda finding: finding.offset)

    def _scan_chunks(self, reader: Any, where: str, result: ScanResult, base: int, resume: list[int]) -> None:
        # One buffer for the whole stream: the tail a chunk leaves (under OVERLAP + LEFT bytes)
        # moves to its front and the next chunk is read in behind it, so each byte is copied once.
        # It starts small and doubles as the stream goes on: a header or a small file costs no
        # zeroed 4 MiB, and a large one reaches whole chunks after a few reads.
        buf = bytearray(FIRST_BUFFER + OVERLAP + LEFT)
        filled, start = 0, 0  # start: the stream position of buf[0]
        readinto = getattr(reader, "readinto", None)
        while not result.full:
            room = memoryview(buf)[filled:filled + CHUNK]
            if readinto is not None:
                got = readinto(room) or 0
            else:
                data = reader.read(CHUNK)
                got = len(data)
                room[:got] = data
            room.release()
            final = got == 0
            filled += got
            if final:
                del buf[filled:]  # the end of the stream is the end of the buffer (`$`, look ahead)
            cut = filled if final else filled - OVERLAP
            text = memoryview(buf)[:filled]
            for index, (matcher, values_of) in enumerate(self._passes):
                resume[index] = self._search(matcher, values_of, buf, text, start, resume[index], cut, where,
                                             base, result)
            text.release()
            if final or result.full:
                return
            keep = max(0, cut - LEFT)
            buf[:filled - keep] = buf[keep:filled]
            filled, start = filled - keep, start + keep
            if len(buf) < CHUNK + OVERLAP + LEFT:  # the stream goes on past the buffer: double it
                buf.extend(bytes(min(len(buf), CHUNK + OVERLAP + LEFT - len(buf))))

    def _search(self, matcher: Matcher, values_of: Callable[..., tuple[int, int, list[Value]]], buf: bytearray,
                text: memoryview, start: int, resume: int, cut: int, where: str, base: int,
                result: ScanResult) -> int:
        # Report the values that begin before `cut`; return the stream position to search on
        # from. A match whose value begins past `cut` is searched again, whole, in the next
        # chunk, from the match's own start (a number's match begins with the byte before it).
        pos = resume - start
        if cut <= pos:
            return resume
        # (locals: this loop runs once per candidate, the costly part of a scan after RE2's own)
        first, limit, add, offset = matcher.first, len(text), result.add, base + start
        wanted = self.kinds | self.patterns.keys()
        while not result.truncated:
            spans = first(text, pos, limit)
            if spans[0][0] < 0:
                return max(resume, start + cut)
            begin, pos, values = values_of(buf, spans, pos, limit)
            if begin >= cut:
                return start + spans[0][0]
            for value in values:
                if value.kind in wanted:
                    add(Finding(value.kind, where, offset + value.start, value.canonical))
            resume = start + pos
        return resume


def _custom_values(name: str, buf: bytes, spans: list[tuple[int, int]], floor: int = 0,
                   limit: int = 0) -> tuple[int, int, list[Value]]:
    begin, end = spans[0]
    return begin, max(end, begin + 1), [Value(name, begin, end, buf[begin:end].decode("utf-8", "replace"))]


@functools.lru_cache(maxsize=32)
def _cached(kinds: tuple[str, ...], custom: tuple[tuple[str, str], ...], depth: int, max_findings: int) -> Scanner:
    return Scanner(kinds, dict(custom), depth, max_findings)
