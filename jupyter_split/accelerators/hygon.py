"""Hygon DCU (`hy-smi`) and AMD (`rocm-smi`): the concise table both print by default.

Its layout (the ROCm SMI guide, "Concise Info"; hy-smi is Hygon's build of it, with DCU for GPU):
a header `DCU Temp AvgPwr ... VRAM% DCU%` (or `GPU ... VRAM% GPU%`), one row per card, between
lines of `=`. The table names no model and gives memory as a percentage only, so the model is
the vendor's family name and `memory_percent` stands for used/total.
"""
from __future__ import annotations

from .base import Card, number, tool


def _concise(text: str, vendor: str, model: str) -> list[Card]:
    cards: list[Card] = []
    header: list[str] | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or line.startswith("="):
            continue
        if words[0] in ("DCU", "GPU", "Device") and "Temp" in words:
            header = words
            continue
        if header is None or not words[0].isdigit() or len(words) < len(header):
            continue
        row = dict(zip(header, words))
        util = row.get("DCU%") or row.get("GPU%")
        temp = row.get("Temp") or row.get("Temp(Junction)")
        power = row.get("AvgPwr") or row.get("Power") or row.get("(Socket)")
        cards.append(Card(vendor, model, int(words[0]), utilisation=number(util), temperature=number(temp),
                          power=number(power), memory_percent=number(row.get("VRAM%"))))
    return cards


@tool("hy-smi", "hygon", "hy-smi", processes=False)
def parse_hy(text: str) -> list[Card]:
    """Hygon DCUs from hy-smi's concise table."""
    return _concise(text, "hygon", "Hygon DCU")


@tool("rocm-smi", "amd", "rocm-smi", processes=False)
def parse_rocm(text: str) -> list[Card]:
    """AMD GPUs from rocm-smi's concise table."""
    return _concise(text, "amd", "AMD GPU")
