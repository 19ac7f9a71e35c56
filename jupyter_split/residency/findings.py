"""What a scan finds: personal information (`Finding`), content it could not read (`Unscannable`),
and one scan's result."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .scan_kinds import LABELS

#: the scanner reads files and archive members this much at a time
CHUNK = 4 << 20


class Finding(NamedTuple):
    """Personal information found: its kind, where, and forms safe to log (never the value)."""

    kind: str
    where: str
    offset: int
    masked: str
    digest: str

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


