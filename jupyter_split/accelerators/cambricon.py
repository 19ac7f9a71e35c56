"""Cambricon: the table of `cnmon` (its default view, `cnmon info` in short).

Its layout (Cambricon's CNMon user guide; the same in driver 4.20 to 5.10): each card is two rows,
`| Card VF Name Firmware | Bus-Id (or Inited Driver) | Util Ecc-Error |` then
`| Fan Temp Pwr:Usage/Cap | Memory-Usage | ... |`, then a "Processes:" table
`| Card MI PID Command Line MLU Memory Usage |`.
"""
from __future__ import annotations

import re

from .base import Card, number, tool, used_total


@tool("cnmon", "cambricon", "cnmon")
def parse(text: str) -> list[Card]:
    """One card per card row, the figures of the row below it, and the pids of the process table."""
    cards: dict[int, Card] = {}
    current: Card | None = None
    processes = False
    for line in text.splitlines():
        if "Processes:" in line:
            processes = True
            continue
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if processes:
            found = re.match(r"(\d+)\s+\S+\s+(\d+)\s", cells[0])
            if found and int(found.group(1)) in cards:
                cards[int(found.group(1))].pids.append(int(found.group(2)))
            continue
        if len(cells) < 3:
            continue
        head = cells[0].split()
        figures = re.search(r"(\d+)C\s+(\S+)\s*W\s*/", cells[0])
        if figures and current is not None:
            current.temperature = float(figures.group(1))
            current.power = number(figures.group(2))
            current.memory_used, current.memory_total = used_total(cells[1])
            current = None
        elif len(head) >= 3 and head[0].isdigit():
            current = Card("cambricon", head[2], int(head[0]), utilisation=number(cells[2].split()[0]))
            cards.setdefault(current.index, current)
    return list(cards.values())
