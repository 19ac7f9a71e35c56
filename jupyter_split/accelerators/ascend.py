"""Huawei Ascend: the table of `npu-smi info`.

Its layout (Huawei's npu-smi reference, "info" command; the same in CANN 23.x to 26.x): each
NPU is two rows, `| NPU Name | Health | Power(W) Temp(C) Hugepages-Usage(page) |` then
`| Chip | Bus-Id | AICore(%) Memory-Usage(MB) HBM-Usage(MB) |` (cards without HBM, the 310
series, have Memory-Usage alone), then a process table `| NPU Chip | Process id | ... |`.
"""
from __future__ import annotations

import re

from .base import Card, number, tool

_BUS = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d$")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@tool("npu-smi", "huawei", "npu-smi info")
def parse(text: str) -> list[Card]:
    """One card per NPU (its first chip's figures), with the pids of its process table."""
    cards: dict[int, Card] = {}
    current: Card | None = None
    processes = False
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if "Process id" in line:
            processes = True
            continue
        if processes:
            if len(cells) >= 2 and cells[0].split() and cells[0].split()[0].isdigit() and cells[1].isdigit():
                card = cards.get(int(cells[0].split()[0]))
                if card is not None:
                    card.pids.append(int(cells[1]))
            continue
        if len(cells) < 3:
            continue
        head = cells[0].split()
        if _BUS.match(cells[1]) and current is not None:
            # the chip row: AICore(%), Memory-Usage used / total, HBM-Usage used / total where the card has HBM
            values = re.findall(r"\d+(?:\.\d+)?", cells[2])
            current.utilisation = float(values[0]) if values else None
            pair = values[3:5] if len(values) >= 5 else values[1:3]
            if len(pair) == 2:
                current.memory_used, current.memory_total = float(pair[0]), float(pair[1])
            current = None
        elif len(head) >= 2 and head[0].isdigit():
            # the NPU row: id and name, health, then power and temperature
            values = cells[2].split()
            current = Card("huawei", " ".join(head[1:]), int(head[0]),
                           power=number(values[0]) if values else None,
                           temperature=number(values[1]) if len(values) > 1 else None)
            cards.setdefault(current.index, current)
    return list(cards.values())
