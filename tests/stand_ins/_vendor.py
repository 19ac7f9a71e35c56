"""The shared body of the plugin STAND-INS (see `tests/stand_ins/__init__.py`)."""
from __future__ import annotations

import os
import types

import torch

STAND_IN = True


def register(type_: str, visible_var: str) -> types.ModuleType:
    """Attach a stand-in `torch.<type_>` that answers like the vendor's runtime would."""
    prefix = f"STANDIN_{type_.upper()}"
    if os.environ.get(f"{prefix}_BROKEN"):
        # what a real plugin raises when its driver library is missing
        raise ImportError(f"lib{type_}rt.so: cannot open shared object file (stand-in)")

    def device_count() -> int:
        cards = int(os.environ.get(f"{prefix}_CARDS", "0"))
        visible = os.environ.get(visible_var)
        if visible is None:
            return cards
        # like the vendor runtimes: only listed indices below the card count exist
        listed = [part for part in visible.split(",") if part.strip().isdigit()]
        return len([i for i in listed if int(i) < cards])

    module = types.ModuleType(f"torch.{type_}", f"STAND-IN for torch.{type_}; not a real device runtime")
    module.STAND_IN = True
    module.device_count = device_count
    module.is_available = lambda: device_count() > 0
    module.is_bf16_supported = lambda: os.environ.get(f"{prefix}_BF16", "1") == "1"
    setattr(torch, type_, module)
    # like the real plugins, claim torch's out-of-tree device slot so "npu:0" parses;
    # a process can hold one such plugin, so a second stand-in leaves the slot alone
    if torch._C._get_privateuse1_backend_name() in ("privateuseone", type_):
        torch.utils.rename_privateuse1_backend(type_)
    return module
