"""Where jupyter_split keeps its own state on this machine."""
from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The data directory: `$JUPYTER_SPLIT_DATA`, else the XDG data home."""
    explicit = os.environ.get("JUPYTER_SPLIT_DATA")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return Path(xdg).expanduser() / "jupyter_split"


def index_path() -> Path:
    """The SQLite file that indexes every run started from this machine."""
    return data_dir() / "index.sqlite"
