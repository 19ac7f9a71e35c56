"""The config's `[policy]` table: what stays home, what may leave, the audit log and the border's
content scanner. Kept here, beside the code that enforces it, so `config.py` stays one screenful
per concern; `config.py` puts it in its models."""
from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_SCAN_NAME = r"[a-z][a-z0-9_]*"


class ScanSite(_Strict):
    """`[policy.scan.sites.NAME]`: what changes for data bound to that site."""

    enabled: bool | None = None          # None: as [policy.scan]
    disable: list[str] = Field(default_factory=list)  # more kinds or patterns not looked for there
    patterns: dict[str, str] = Field(default_factory=dict)  # more patterns looked for there

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: dict[str, str]) -> dict[str, str]:
        from .matcher import check_pattern
        from .scan_kinds import BUILTIN

        for name, pattern in patterns.items():
            if not re.fullmatch(_SCAN_NAME, name) or name in BUILTIN:
                raise ValueError(f"pattern name {name!r} must be lowercase letters, digits and '_', and not a "
                                 f"built-in kind ({', '.join(BUILTIN)}): rename it")
            check_pattern(name, pattern)
        return patterns


class ScanPolicy(ScanSite):
    """`[policy.scan]`: the content scanner at the border (see jupyter_split.residency.scan)."""

    enabled: bool = True                 # every export to another jurisdiction is scanned
    depth: int = Field(3, ge=0, le=32)   # archive levels opened; deeper ones are refused
    max_findings: int = Field(20, ge=1)  # per file: the scan stops there
    sites: dict[str, ScanSite] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_names(self) -> "ScanPolicy":
        from .scan_kinds import BUILTIN

        for key, rules in [("disable", self), *((f"sites.{site}.disable", rules) for site, rules in self.sites.items())]:
            known = {*BUILTIN, *self.patterns, *rules.patterns}
            for name in rules.disable:
                if name not in known:
                    raise ValueError(f"{key} names {name!r}, which is neither a built-in kind "
                                     f"({', '.join(BUILTIN)}) nor a pattern of [policy.scan]: fix the name")
        return self


class Policy(_Strict):
    """`[policy]`: what must stay home (`resident`), approved exports, the audit log and the scanner.

    `metrics_abroad` unset puts no limit on the metrics home runs send to a W&B server
    abroad; a list, even an empty one, lets only the metrics it matches go.
    """

    resident: list[str] = Field(default_factory=list)
    audit_log: str | None = None
    allow_export: list[str] = Field(default_factory=list)
    metrics_abroad: list[str] | None = None
    scan: ScanPolicy = Field(default_factory=ScanPolicy)

    @field_validator("resident")
    @classmethod
    def _anchored(cls, values: list[str]) -> list[str]:
        # the full check (and its matching) is in jupyter_split.residency.locations
        for value in values:
            if not re.match(r"([A-Za-z][A-Za-z0-9+.-]+:|/|~|\*\*)", value.strip()):
                raise ValueError(f"{value!r} is a relative path: write an absolute path or a URL "
                                 "(e.g. \"file:///data/pii/**\"), or start it with ** to match anywhere")
        return values
