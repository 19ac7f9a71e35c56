"""Accelerator detection. The CPU paths are real; Ascend, Cambricon and Moore Threads cards
cannot exist here, so their plugins are the import STAND-INS in `tests/stand_ins/`."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from jupyter_split.accelerators import devices

STAND_INS = Path(__file__).parents[1] / "stand_ins"
PLUGINS = ("torch_npu", "torch_mlu", "torch_musa")


@pytest.fixture
def stand_in(monkeypatch):
    """Make the stand-in plugins importable; undo their `torch.<type>` registration after."""
    for var in list(devices.VISIBLE_DEVICES_VAR.values()) + ["LOCAL_RANK"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.syspath_prepend(str(STAND_INS))
    yield monkeypatch
    for name in PLUGINS:
        sys.modules.pop(name, None)
        type_ = name.removeprefix("torch_")
        if getattr(getattr(torch, type_, None), "STAND_IN", False):
            delattr(torch, type_)


def test_visible_device_variables_are_the_vendor_ones():
    assert devices.VISIBLE_DEVICES_VAR == {
        "cuda": "CUDA_VISIBLE_DEVICES", "npu": "ASCEND_RT_VISIBLE_DEVICES", "mlu": "MLU_VISIBLE_DEVICES",
        "musa": "MUSA_VISIBLE_DEVICES", "dcu": "HIP_VISIBLE_DEVICES", "xpu": "ZE_AFFINITY_MASK",
    }


def test_this_machine_is_a_cpu_with_fp32_and_gloo():
    info = devices.detect()
    assert (info.kind, info.device, info.dtype, info.dist_backend) == ("cpu", "cpu", "float32", "gloo")
    assert info.note is None
    g = devices.runner_globals("auto")
    assert g == {"device": torch.device("cpu"), "dtype": torch.float32, "dist_backend": "gloo"}


def test_missing_cuda_falls_back_to_cpu_with_a_note_not_a_crash():
    with pytest.warns(RuntimeWarning, match="accelerator = 'cuda'.*sees no cuda device"):
        g = devices.runner_globals("cuda")
    assert g["device"] == torch.device("cpu")
    assert "running on the CPU" in devices.detect("cuda").note


def test_unknown_accelerator_names_the_choices():
    with pytest.raises(ValueError, match="unknown accelerator 'tpu'.*npu"):
        devices.detect("tpu")


def test_without_torch_the_globals_are_strings_and_torch_is_not_imported():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from jupyter_split.accelerators import devices\n"
        "g = devices.runner_globals('auto')\n"
        "assert sys.modules['torch'] is None\n"
        "print(g)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "{'device': 'cpu', 'dtype': 'float32', 'dist_backend': 'gloo'}"


def test_stand_in_ascend_with_bf16(stand_in):
    stand_in.setenv("STANDIN_NPU_CARDS", "8")
    info = devices.detect()
    assert (info.kind, info.type, info.count, info.plugin) == ("npu", "npu", 8, "torch_npu")
    assert (info.device, info.dtype, info.dist_backend) == ("npu:0", "bfloat16", "hccl")
    g = devices.runner_globals("auto")
    assert g["dtype"] is torch.bfloat16 and g["dist_backend"] == "hccl"
    assert str(g["device"]) == "npu:0"


def test_torchrun_local_rank_picks_the_card(stand_in):
    stand_in.setenv("STANDIN_NPU_CARDS", "4")
    stand_in.setenv("LOCAL_RANK", "3")
    assert devices.detect("npu").device == "npu:3"


def test_ascend_910a_has_no_bf16_so_fp16(stand_in):
    stand_in.setenv("STANDIN_NPU_CARDS", "1")
    stand_in.setenv("STANDIN_NPU_BF16", "0")
    info = devices.detect("npu")
    assert info.dtype == "float16" and not info.supports("bfloat16") and info.supports("float16")


def test_visible_devices_variable_limits_the_count(stand_in):
    stand_in.setenv("STANDIN_NPU_CARDS", "8")
    stand_in.setenv("ASCEND_RT_VISIBLE_DEVICES", "2,5")
    info = devices.detect()
    assert info.count == 2 and info.visible_var == "ASCEND_RT_VISIBLE_DEVICES" and info.visible == "2,5"
    assert "ASCEND_RT_VISIBLE_DEVICES=2,5" in devices.describe(info)


def test_visible_devices_variable_empty_hides_the_cards(stand_in):
    stand_in.setenv("STANDIN_NPU_CARDS", "8")
    stand_in.setenv("ASCEND_RT_VISIBLE_DEVICES", "")
    info = devices.detect()
    # hidden on purpose: `auto` says why in `skipped` but does not warn
    # (the other stand-ins, installed with no card, still warn: they are not hidden)
    assert info.kind == "cpu" and "ASCEND_RT_VISIBLE_DEVICES" not in info.note
    assert "hidden by ASCEND_RT_VISIBLE_DEVICES=''" in info.skipped[0]
    # asked for by name, it warns
    assert "hidden by ASCEND_RT_VISIBLE_DEVICES=''" in devices.detect("npu").note


def test_plugin_installed_without_a_card_is_reported_not_raised(stand_in):
    stand_in.setenv("STANDIN_NPU_CARDS", "0")
    with pytest.warns(RuntimeWarning, match="torch_npu is installed but no npu card is visible"):
        g = devices.runner_globals("auto")
    assert g["device"] == torch.device("cpu") and g["dtype"] is torch.float32


def test_plugin_that_fails_to_import_is_reported_not_raised(stand_in):
    stand_in.setenv("STANDIN_NPU_BROKEN", "1")
    info = devices.detect("npu")
    assert info.kind == "cpu"
    assert "torch_npu is installed but failed to import" in info.note and "libnpurt.so" in info.note


def test_auto_prefers_npu_over_mlu_and_names_skipped_plugins(stand_in):
    stand_in.setenv("STANDIN_NPU_CARDS", "2")
    stand_in.setenv("STANDIN_MLU_CARDS", "2")
    assert devices.detect().kind == "npu"
    stand_in.setenv("STANDIN_NPU_CARDS", "0")
    info = devices.detect()
    assert (info.kind, info.dist_backend) == ("mlu", "cncl")
    assert any("torch_npu" in why for why in info.skipped)


def test_explicit_accelerator_is_probed_alone(stand_in):
    stand_in.setenv("STANDIN_NPU_CARDS", "2")
    stand_in.setenv("STANDIN_MUSA_CARDS", "1")
    info = devices.detect("musa")
    assert (info.kind, info.device, info.dist_backend) == ("musa", "musa:0", "mccl")


def test_runner_globals_never_warns_on_a_plain_cpu_machine():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        devices.runner_globals("auto")
        devices.runner_globals("cpu")


@pytest.mark.slow
def test_the_same_cell_gets_each_sites_device(split_home):
    """A real runner per site: abroad on this CPU, home on the STAND-IN Ascend plugin (two pretend cards)."""
    from jupyter_split.core.outcome import CellOptions
    from jupyter_split.core.split import Split
    from tests.fixtures.core import write_config

    repo = Path(__file__).parents[2]
    write_config(split_home, f"""
[experiment]
home = "home"
default_remote = "abroad"
[sites.abroad]
jurisdiction = "SG"
accelerator = "auto"
[sites.home]
jurisdiction = "CN"
accelerator = "npu"
env = {{ PYTHONPATH = "{STAND_INS}:{repo}", STANDIN_NPU_CARDS = "2" }}
""")
    cell = "print(device, dtype, dist_backend)"
    split = Split()
    seen = {}
    for site in ("abroad", "home"):
        events: list[dict] = []
        outcome = split.execute(cell, CellOptions(site=site), {}, events.append)
        assert outcome.state == "succeeded", (outcome, events)
        seen[site] = "".join(e["text"] for e in events if e["type"] == "stream").strip()
    assert seen == {"abroad": "cpu torch.float32 gloo", "home": "npu:0 torch.bfloat16 hccl"}


def test_hidden_cuda_on_a_cpu_only_torch_is_not_noise(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    info = devices.detect()
    assert info.kind == "cpu" and info.note is None and info.skipped == ()


def test_command_line_reports_json_for_doctor():
    out = subprocess.run([sys.executable, "-m", "jupyter_split.accelerators.devices", "mlu"], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert (report["kind"], report["device"], report["dtype"]) == ("cpu", "cpu", "float32")
    assert "torch_mlu is not installed" in report["note"]
