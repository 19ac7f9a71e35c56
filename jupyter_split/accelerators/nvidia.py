"""NVIDIA: `nvidia-smi --query-gpu ... --format=csv,noheader,nounits` and `--query-compute-apps`.

The CSV query is nvidia-smi's documented scripting interface (nvidia-smi(1): "--query-gpu",
"--format=csv"; values are "[N/A]" or "[Not Supported]" where a card has none). mthreads-gmi
takes the same query on newer drivers, but its table (mthreads.py) is read everywhere.
"""
from __future__ import annotations

import csv

from .base import Card, number, tool

FIELDS = "index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"
APPS = "gpu_uuid,pid,used_memory"
#: between the two queries' output in the probe's section
APPS_MARK = "--compute-apps--"


@tool("nvidia-smi", "nvidia",
      f"nvidia-smi --query-gpu={FIELDS} --format=csv,noheader,nounits; echo {APPS_MARK}; "
      f"nvidia-smi --query-compute-apps={APPS} --format=csv,noheader,nounits")
def parse(text: str) -> list[Card]:
    """The cards of the GPU query, each with the pids the compute-apps query puts on it."""
    gpus, _, apps = text.partition(APPS_MARK)
    cards: list[Card] = []
    for row in csv.reader(line for line in gpus.splitlines() if line.strip()):
        cells = [cell.strip() for cell in row]
        if len(cells) < 8 or not cells[0].isdigit():
            continue  # an error line ("NVIDIA-SMI has failed ...") is no card
        cards.append(Card("nvidia", cells[2], int(cells[0]), number(cells[3]), number(cells[4]),
                          number(cells[5]), number(cells[6]), number(cells[7]), uuid=cells[1]))
    by_uuid = {card.uuid: card for card in cards}
    for row in csv.reader(line for line in apps.splitlines() if line.strip()):
        cells = [cell.strip() for cell in row]
        if len(cells) >= 2 and cells[0] in by_uuid and cells[1].isdigit():
            by_uuid[cells[0]].pids.append(int(cells[1]))
    return cards
