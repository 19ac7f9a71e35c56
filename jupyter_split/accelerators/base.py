"""The one record every vendor tool's output becomes, and the registry of the tools' parsers."""
from __future__ import annotations

import importlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

#: the parser modules, imported on first use of the registry (each registers its tools)
_MODULES = ("nvidia", "ascend", "cambricon", "mthreads", "hygon")


@dataclass
class Card:
    """One accelerator card as its vendor's tool reports it; None where the tool gives no value."""

    vendor: str
    model: str
    index: int
    utilisation: float | None = None      # percent
    memory_used: float | None = None      # MiB
    memory_total: float | None = None     # MiB
    temperature: float | None = None      # degrees C
    power: float | None = None            # W
    memory_percent: float | None = None   # used/total, where the tool gives only that (rocm-smi, hy-smi)
    uuid: str | None = None
    pids: list[int] = field(default_factory=list)   # processes on the card, where the tool lists them
    run: str | None = None                # the run of this experiment that holds the card
    tool: str = ""                        # the tool that reported it

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain, JSON-able dict; `memory_percent` filled from used/total where both are known."""
        row = asdict(self)
        if row["memory_percent"] is None and self.memory_used is not None and self.memory_total:
            row["memory_percent"] = round(100 * self.memory_used / self.memory_total, 1)
        return row


@dataclass
class Tool:
    """A vendor's tool: the command the probe runs (a shell line) and the parser of its output.

    `parse` returns the cards; processes the tool lists land in each card's `pids` (`processes`: whether
    the tool lists them at all).
    """

    name: str
    vendor: str
    command: str
    parse: Callable[[str], list[Card]]
    processes: bool = True


TOOLS: dict[str, Tool] = {}


def tool(name: str, vendor: str, command: str,
         processes: bool = True) -> Callable[[Callable[[str], list[Card]]], Callable[[str], list[Card]]]:
    """Register the decorated parser as tool `name` (the executable the probe looks for)."""
    def register(parse: Callable[[str], list[Card]]) -> Callable[[str], list[Card]]:
        TOOLS[name] = Tool(name, vendor, command, parse, processes)
        return parse
    return register


def tools() -> dict[str, Tool]:
    """Every registered tool, by executable name, after importing each parser module."""
    for module in _MODULES:
        importlib.import_module(f".{module}", __package__)
    return TOOLS


def number(text: str | None) -> float | None:
    """The first number in `text` (`"86.0"`, `" 32C"`, `"106 W"`), or None for `N/A`, `-` or nothing."""
    if text is None:
        return None
    found = re.search(r"-?\d+(?:\.\d+)?", text)
    return float(found.group()) if found else None


def used_total(text: str) -> tuple[float | None, float | None]:
    """`"2828 / 32768"`, `"0 MiB/ 23374 MiB"` or `"662MiB(16384MiB)"` as (used, total)."""
    found = re.findall(r"\d+(?:\.\d+)?", text)
    if len(found) < 2:
        return None, None
    return float(found[0]), float(found[1])
