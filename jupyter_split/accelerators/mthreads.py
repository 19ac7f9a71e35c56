"""Moore Threads: the table of `mthreads-gmi`.

Its layout (Moore Threads' mthreads-gmi guide; the same in 1.12 to 2.0): each GPU is
`ID Name |PCIe |%GPU Mem` (`0  MTT S4000 |00000000:08:00.0 |88%  44302MiB(49152MiB)`) then
`Device Type |Pcie Lane Width |Temp MPC Capable` (`Physical |16x(16x) |65C YES`); then a
"Processes:" table `ID PID Process name GPU Memory Usage`. It gives no power draw.
"""
from __future__ import annotations

import re

from .base import Card, tool

_CARD = re.compile(r"^(\d+)\s+(.+?)\s*\|\s*\S+\s*\|\s*(\d+(?:\.\d+)?)%\s+(\d+)MiB\((\d+)MiB\)")
_TEMP = re.compile(r"\|\s*(\d+(?:\.\d+)?)C\b")
_PROCESS = re.compile(r"^(\d+)\s+(\d+)\s+.*?(\d+)MiB\s*$")


@tool("mthreads-gmi", "mthreads", "mthreads-gmi")
def parse(text: str) -> list[Card]:
    """One card per GPU row, its temperature from the row below, and the pids of the process table."""
    cards: dict[int, Card] = {}
    current: Card | None = None
    processes = False
    for line in text.splitlines():
        if line.startswith("Processes:"):
            processes = True
            continue
        if processes:
            found = _PROCESS.match(line)
            if found and int(found.group(1)) in cards:
                cards[int(found.group(1))].pids.append(int(found.group(2)))
            continue
        found = _CARD.match(line)
        if found:
            current = Card("mthreads", found.group(2), int(found.group(1)), float(found.group(3)),
                           float(found.group(4)), float(found.group(5)))
            cards.setdefault(current.index, current)
            continue
        temp = _TEMP.search(line)
        if temp and current is not None:
            current.temperature = float(temp.group(1))
            current = None
    return list(cards.values())
