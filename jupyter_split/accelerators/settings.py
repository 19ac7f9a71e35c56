"""The config's tables for this package: `[accelerators]` and each site's `lease`.

Kept here, not in `config.py`, so the config stays one screenful per concern; `config.py`
puts them in its models. Nothing here imports the rest of jupyter_split.
"""
from __future__ import annotations

import datetime as _dt
import math
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Accelerators(_Strict):
    """`[accelerators]`: how often a site's cards are read. A reading younger than `interval`
    seconds is answered from memory, so however many panels or `top` calls ask, a site is probed
    at most once an interval, and only while someone asks."""

    interval: float = Field(default=5.0, ge=1.0, le=3600.0)


class Lease(_Strict):
    """`[sites.NAME] lease = {...}`: what was leased on the site, all optional.

    `gpu_hours`: accelerator-hours bought (per month where `monthly`, else in all); `price_per_gpu_hour`
    in `currency`; `ends`: the last day of the lease.
    """

    gpu_hours: float | None = None
    monthly: bool = False
    price_per_gpu_hour: float | None = None
    currency: str | None = None
    ends: _dt.date | None = None

    @field_validator("gpu_hours", "price_per_gpu_hour")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{value} is not a number of hours or a price: give 0 or more, e.g. 1000")
        return value

    @field_validator("currency")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError(f"{value!r} is not an ISO 4217 currency code: give three letters, e.g. \"USD\" or \"CNY\"")
        return value.upper() if value else value

    @field_validator("ends", mode="before")
    @classmethod
    def _day(cls, value: object) -> object:
        if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"{value!r} is not a day: write it as \"YYYY-MM-DD\", e.g. \"2027-03-31\"")
        if isinstance(value, _dt.datetime):
            return value.date()
        return value
