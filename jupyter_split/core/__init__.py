"""The client core under every face (magics, CLI, server): `Split` runs cells on sites, attaches to
runs, cancels and lists them. `split` holds it; `channel` is its side of the runner's socket and
`follow` streams a run's events."""
from .split import CellOptions, RemoteError, RunOutcome, Split, get_split, reset

__all__ = ["CellOptions", "RemoteError", "RunOutcome", "Split", "get_split", "reset"]
