"""Each vendor tool's parser against its stand-in's output (the format its vendor documents)."""
from __future__ import annotations

import os
import subprocess

import pytest

from jupyter_split.accelerators.base import number, tools, used_total
from tests.accelerators.conftest import STAND_INS, stand_in_path

#: per tool: vendor, model, and whether it gives memory in MiB and power
EXPECTED = {
    "nvidia-smi": ("nvidia", "NVIDIA H100 80GB HBM3", 81559, True),
    "npu-smi": ("huawei", "910B3", 65536, True),
    "cnmon": ("cambricon", "MLU370-X8", 23374, True),
    "mthreads-gmi": ("mthreads", "MTT S4000", 49152, False),
    "hy-smi": ("hygon", "Hygon DCU", None, True),
}


def stand_in_output(name: str, **env: str) -> str:
    """What the probe would read from the tool: its registered command, run against the stand-in."""
    done = subprocess.run(["sh", "-c", tools()[name].command], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": stand_in_path(), **env})
    return done.stdout


def test_every_stand_in_says_it_is_one() -> None:
    for name in EXPECTED:
        assert "STAND-IN" in (STAND_INS / name).read_text(), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_tool_output_becomes_one_record_per_card(name: str) -> None:
    vendor, model, total, power = EXPECTED[name]
    cards = tools()[name].parse(stand_in_output(name, STANDIN_SMI_CARDS="3", STANDIN_SMI_PIDS="1:4242,2:77"))
    assert [c.index for c in cards] == [0, 1, 2]
    for card in cards:
        i = card.index
        assert (card.vendor, card.model) == (vendor, model)
        assert card.utilisation == 10 * i + 7 and card.temperature == 40 + i
        if total:
            assert (card.memory_used, card.memory_total) == (1024 * (i + 1), total)
        else:  # the concise table gives VRAM as a percentage only
            assert card.memory_used is None and card.to_dict()["memory_percent"] == 3 * (i + 1)
        assert (card.power is not None) == power
        if power and name != "cnmon":  # cnmon prints whole watts
            assert card.power == 80.5 + i
    if name != "hy-smi":  # hy-smi's default table lists no processes
        assert [c.pids for c in cards] == [[], [4242], [77]]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_tool_without_its_driver_gives_no_cards(name: str) -> None:
    assert tools()[name].parse(stand_in_output(name, STANDIN_SMI_FAIL="1")) == []


def test_nvidia_fields_the_card_does_not_have_are_none() -> None:
    text = "0, GPU-1, Tesla T4, [N/A], 10, 15360, 35, [Not Supported]\n--compute-apps--\n"
    card = tools()["nvidia-smi"].parse(text)[0]
    assert card.utilisation is None and card.power is None and card.temperature == 35


def test_npu_smi_of_a_card_without_hbm_reads_its_memory() -> None:
    # the 310 series: Memory-Usage alone in the chip row
    text = ("| NPU   Name   | Health | Power(W)  Temp(C)  Hugepages-Usage(page) |\n"
            "| 3     310P3  | OK     | NA        51       0    / 0              |\n"
            "| 0            | 0000:01:00.0 | 12  1510 / 21527 |\n")
    card = tools()["npu-smi"].parse(text)[0]
    assert (card.index, card.model, card.power, card.temperature) == (3, "310P3", None, 51)
    assert (card.utilisation, card.memory_used, card.memory_total) == (12, 1510, 21527)


def test_numbers_and_pairs() -> None:
    assert number(" 32C") == 32 and number("N/A") is None and number(None) is None
    assert used_total("662MiB(16384MiB)") == (662, 16384) and used_total("-") == (None, None)
