"""The shared body of the vendor tool STAND-INS in this folder (see README.md beside it).

None of these is a vendor's tool: each prints, for the flags jupyter_split uses, the output
format its vendor documents, with made-up figures, so the parsers and the probe are tested
on a machine without those cards. Driven by environment variables:

    STANDIN_SMI_CARDS  cards on the pretend machine (default 2)
    STANDIN_SMI_PIDS   processes on cards, "CARD:PID,CARD:PID" (default none)
    STANDIN_SMI_FAIL   set to make the tool fail as it does without its driver
"""
from __future__ import annotations

import os
import sys


def cards() -> int:
    return int(os.environ.get("STANDIN_SMI_CARDS", "2"))


def pids() -> list[tuple[int, int]]:
    found = []
    for part in filter(None, os.environ.get("STANDIN_SMI_PIDS", "").split(",")):
        card, pid = part.split(":")
        found.append((int(card), int(pid)))
    return found


def failing(message: str) -> None:
    """Exit as the vendor's tool does when its driver cannot be reached."""
    if os.environ.get("STANDIN_SMI_FAIL"):
        print(message, file=sys.stderr)
        sys.exit(9)


def figures(index: int) -> dict[str, float]:
    """Made-up but plausible figures for card `index`: each card differs, so a mix-up shows."""
    return {"util": 10 * index + 7, "used": 1024 * (index + 1), "temp": 40 + index, "power": 80.5 + index}
