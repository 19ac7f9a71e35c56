"""What a scan finds: personal information (`Finding`), content it could not read (`Unscannable`),
and one scan's result."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .scan_kinds import LABELS, mask

#: the scanner reads files and archive members this much at a time
CHUNK = 4 << 20


class Finding:
    """Personal information found: its kind, where, and forms safe to log (never the value).

    The masked form and the hash are made when first asked for: a scan stops at its 20th
    finding, but a benchmark or an audit of recall keeps them all. The value itself is kept
    only to make them, and shows in no repr, record or message.
    """

    __slots__ = ("kind", "where", "offset", "_value", "_masked", "_digest")

    def __init__(self, kind: str, where: str, offset: int, value: str):
        self.kind, self.where, self.offset, self._value = kind, where, offset, value
        self._masked: str | None = None
        self._digest: str | None = None

    @property
    def masked(self) -> str:
        """The value with its identifying middle hidden (safe for logs)."""
        if self._masked is None:
            self._masked = mask(self.kind, self._value)
        return self._masked

    @property
    def digest(self) -> str:
        """sha256 of the value's canonical form: the same number written two ways has one digest."""
        if self._digest is None:
            self._digest = hashlib.sha256(self._value.encode()).hexdigest()
        return self._digest

    def moved(self, where: str, offset: int) -> "Finding":
        """The same finding, placed in another file at another offset."""
        return Finding(self.kind, where, offset, self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Finding) and (self.kind, self.where, self.offset, self._value) == (
            other.kind, other.where, other.offset, other._value)

    def __hash__(self) -> int:
        return hash((self.kind, self.where, self.offset, self.digest))

    def __repr__(self) -> str:
        return f"Finding(kind={self.kind!r}, where={self.where!r}, offset={self.offset}, masked={self.masked!r})"

    def describe(self) -> str:
        """e.g. "a PRC resident ID number (110105********0012) at byte 1234 of inner/a.csv"."""
        label = LABELS.get(self.kind, f"a match of the pattern {self.kind!r} of [policy.scan]")
        return f"{label} ({self.masked}) at byte {self.offset} of {self.where}"

    def record(self, file: str) -> dict[str, Any]:
        """The audit log's form of it, for `file`: the masked value and its hash, never the value."""
        return {"file": file, "kind": self.kind, "where": self.where, "offset": self.offset,
                "masked": self.masked, "sha256": self.digest}


@dataclass(frozen=True)
class Unscannable:
    """Content the scanner could not read: the guard refuses it (fail closed)."""

    where: str
    reason: str
    fix: str

    def describe(self) -> str:
        """Why it cannot be scanned and what to do."""
        return f"{self.where} cannot be scanned: {self.reason}. {self.fix}"


@dataclass
class ScanResult:
    """What one scan found. `truncated`: it stopped at `max_findings` (more may be there)."""

    findings: list[Finding] = field(default_factory=list)
    unscannable: list[Unscannable] = field(default_factory=list)
    truncated: bool = False
    limit: int = 20

    @property
    def clean(self) -> bool:
        """Nothing found and everything read."""
        return not self.findings and not self.unscannable

    @property
    def full(self) -> bool:
        """The scan stops: `max_findings` were found and one more."""
        return self.truncated

    def add(self, finding: Finding) -> None:
        """Keep `finding`, or mark the result truncated past the limit."""
        if len(self.findings) >= self.limit:
            self.truncated = True
        else:
            self.findings.append(finding)


