"""The client core under every face (magics, CLI, server): `Split` runs cells on sites, attaches to
runs, cancels and lists them. `split` holds it; `outcome` the cell's options and how a run ended;
`channel` is its side of the runner's socket, `follow` streams a run's events, `replay` reads a
run's log a chunk at a time and `logs` finds a run's log by its id."""
from __future__ import annotations

import importlib
from typing import Any

from .outcome import CellOptions, RemoteError, RunOutcome

__all__ = ["CellOptions", "RemoteError", "RunOutcome", "Split", "get_split", "reset"]


def __getattr__(name: str) -> Any:
    # `split` brings the config, executors and the guard: a command that only reads a run's log
    # (core.logs) or parses its options (core.outcome) does not pay for them
    if name in ("Split", "get_split", "reset"):
        return getattr(importlib.import_module(".split", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
