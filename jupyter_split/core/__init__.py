"""The client core under every face (magics, CLI, server): `Split` runs cells on sites, attaches to
runs, cancels and lists them. `split` holds it; `outcome` the cell's options and how a run ended;
`channel` is its side of the runner's socket, `follow` streams a run's events and `replay` reads a
run's log a chunk at a time."""
from .outcome import CellOptions, RemoteError, RunOutcome
from .split import Split, get_split, reset

__all__ = ["CellOptions", "RemoteError", "RunOutcome", "Split", "get_split", "reset"]
