"""Run ids: `<experiment>-<site>-<UTC time>-<random>`, sortable by creation time."""
from __future__ import annotations

import secrets
import time


def new_run_id(experiment: str, site: str) -> str:
    """A new run id: `<experiment>-<site>-<UTC yyyymmdd-hhmmss>-<6 hex digits>`.

    The runs of one experiment and site sort by creation time (to the second).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{experiment}-{site}-{stamp}-{secrets.token_hex(3)}"
