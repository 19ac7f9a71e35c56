"""Accelerators of every site, live: each vendor's tool read through the site's executor.

One parser module per vendor tool, registered by name behind `base.Tool` (as fsspec's
implementations are), each turning the tool's documented output into `Card` records.
`probe.py` runs whichever tools a site has, plus the host's CPU and memory, on the site's
existing connection; `poll.py` keeps the readings no longer than the configured interval.
`usage.py` sums the accelerator-hours of the run index against each site's lease.

This package imports no config and no executor at import time: `config.py` takes its
`settings` models from here.
"""
from __future__ import annotations

from .base import TOOLS, Card, Tool, tool

__all__ = ["TOOLS", "Card", "Tool", "tool"]
