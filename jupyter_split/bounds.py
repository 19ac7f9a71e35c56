"""The one range check for numbers a user gives (CLI options, keyword arguments of the Python API)."""
from __future__ import annotations

import math


def out_of_range(value: float, low: float, high: float | None = None, *, above: bool = False,
                 whole: bool = True) -> str | None:
    """None when `value` is finite and from `low` (exclusive with `above`) to `high`; else what to give instead."""
    what = "a whole number" if whole else "a number"
    if high is not None:
        span = f"{'above' if above else 'from'} {low:g} to {high:g}"
    else:
        span = f"above {low:g}" if above else f"of {low:g} or more"
    inside = math.isfinite(value) and (value > low if above else value >= low) and (high is None or value <= high)
    return None if inside else f"give {what} {span}"


def check_options(where: str, **options: tuple[float, float]) -> None:
    """ValueError naming the first keyword argument below its floor: `check_options("copy", retries=(r, 0))`."""
    for name, (value, low) in options.items():
        fix = out_of_range(value, low, whole=isinstance(value, int))
        if fix:
            raise ValueError(f"{where}: {name}={value!r} is out of range: {fix}")
