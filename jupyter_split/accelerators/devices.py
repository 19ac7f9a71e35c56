"""Which accelerator this process has, and the device, dtype and collective backend to use on it.

The same cell must run on CUDA abroad and on a domestic card at home, so the runner
predefines `device`, `dtype` and `dist_backend` from `runner_globals(site.accelerator)`.
Vendor plugins (torch_npu, torch_mlu, torch_musa) are probed in a fixed order; a plugin
installed on a machine with no card is reported in `DeviceInfo.note`, never raised.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

#: the variable each vendor's runtime reads to hide or reorder cards
VISIBLE_DEVICES_VAR: dict[str, str] = {
    "cuda": "CUDA_VISIBLE_DEVICES",
    "npu": "ASCEND_RT_VISIBLE_DEVICES",
    "mlu": "MLU_VISIBLE_DEVICES",
    "musa": "MUSA_VISIBLE_DEVICES",
    "dcu": "HIP_VISIBLE_DEVICES",
    "xpu": "ZE_AFFINITY_MASK",
}

#: the order `auto` probes in: domestic plugins first, because a machine that has one
#: usually also has a CUDA-built torch that would otherwise report zero cards
PROBE_ORDER = ("npu", "mlu", "musa", "dcu", "cuda", "xpu", "mps")

#: accelerator -> (plugin module that must be imported first, torch device type)
_PLUGINS: dict[str, tuple[str | None, str]] = {
    "npu": ("torch_npu", "npu"),
    "mlu": ("torch_mlu", "mlu"),
    "musa": ("torch_musa", "musa"),
    "dcu": (None, "cuda"),       # Hygon DCU: a ROCm build of torch, driven through torch.cuda
    "cuda": (None, "cuda"),
    "xpu": (None, "xpu"),
    "mps": (None, "mps"),
    "cpu": (None, "cpu"),
}

_DIST_BACKEND = {"cuda": "nccl", "dcu": "nccl", "npu": "hccl", "mlu": "cncl", "musa": "mccl", "xpu": "xccl"}
_HIDDEN = {"", "-1", "none", "NoDevFiles"}
_HIDDEN_TAIL = "; unset it or list card indices to use them"


@dataclass(frozen=True)
class DeviceInfo:
    """What `detect` found. `kind` is the site-level name (dcu, npu, ...), `type` torch's."""

    kind: str
    type: str
    count: int
    bf16: bool
    fp16: bool
    dist_backend: str
    visible_var: str | None = None
    visible: str | None = None
    plugin: str | None = None
    #: why a requested or installed accelerator is not the one in use, for the user to read
    note: str | None = None
    skipped: tuple[str, ...] = field(default=())

    @property
    def device(self) -> str:
        """`type:index` for this process: the torchrun LOCAL_RANK picks the card when set."""
        if self.type == "cpu":
            return "cpu"
        rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        return f"{self.type}:{rank % max(self.count, 1)}"

    @property
    def dtype(self) -> str:
        """The compute dtype a cell should use here: bf16 where native, else fp16, else fp32."""
        if self.bf16:
            return "bfloat16"
        return "float16" if self.fp16 else "float32"

    def supports(self, dtype_name: str) -> bool:
        """Whether tensors of this floating dtype should stay as they are on this device."""
        if dtype_name == "bfloat16":
            return self.bf16
        if dtype_name == "float16":
            return self.fp16
        return True


def torch_available() -> bool:
    """Whether torch is installed here, without importing it (importing it is slow)."""
    return importlib.util.find_spec("torch") is not None


def _cpu() -> DeviceInfo:
    # CPUs store bf16 and fp16 but most compute them slowly or by emulation; fp32 is the
    # dtype that is fast and exact on every CPU at home, so half-precision loads widen to it.
    return DeviceInfo(kind="cpu", type="cpu", count=1, bf16=False, fp16=False, dist_backend="gloo")


def _hidden_by_env(kind: str) -> tuple[str | None, str | None, bool]:
    var = VISIBLE_DEVICES_VAR.get(kind)
    value = os.environ.get(var) if var else None
    if kind == "dcu" and value is None:
        # ROCm also honours the CUDA variable
        var, value = "CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES")
    return var, value, value is not None and value.strip() in _HIDDEN


def _backend(kind: str) -> str:
    name = _DIST_BACKEND.get(kind, "gloo")
    if name == "xccl":
        import torch.distributed as dist

        available = getattr(dist, "is_xccl_available", lambda: False)
        return name if dist.is_available() and available() else "gloo"
    return name


def _probe(kind: str) -> tuple[DeviceInfo | None, str | None]:
    """One accelerator: its info, or None and why it is not usable (None when simply absent)."""
    plugin, type_ = _PLUGINS[kind]
    var, visible, hidden = _hidden_by_env(kind)
    if plugin is not None:
        if importlib.util.find_spec(plugin) is None:
            return None, None
        try:
            importlib.import_module(plugin)
        except Exception as exc:  # a vendor plugin that fails to load must not take the runner down
            return None, f"{plugin} is installed but failed to import ({type(exc).__name__}: {exc}); check the vendor driver and toolkit versions"
    import torch

    if kind in ("dcu", "cuda"):
        hip, cuda = getattr(torch.version, "hip", None), getattr(torch.version, "cuda", None)
        if (kind == "dcu" and hip is None) or (hip is None and cuda is None):
            return None, None  # a CPU-only torch: nothing to report, even with the cards hidden
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        count = 1 if backend is not None and backend.is_available() else 0
        if not count:
            return None, None
        return DeviceInfo(kind="mps", type="mps", count=1, bf16=_mps_bf16(), fp16=True, dist_backend="gloo"), None
    module = getattr(torch, type_, None)
    if module is None:
        if plugin is not None:
            return None, f"{plugin} imported but did not register torch.{type_}; reinstall the plugin matching torch {torch.__version__}"
        return None, None
    if hidden:
        return None, f"{kind} cards are hidden by {var}={visible!r}{_HIDDEN_TAIL}"
    try:
        count = int(module.device_count()) if module.is_available() else 0
    except Exception as exc:  # drivers missing or mismatched: report, do not crash
        return None, f"torch.{type_} failed to query cards ({type(exc).__name__}: {exc})"
    if count == 0:
        if plugin is not None or kind == "dcu":
            shown = f" ({var}={visible!r})" if visible is not None else ""
            return None, f"{plugin or 'torch (ROCm)'} is installed but no {kind} card is visible{shown}"
        return None, None
    return DeviceInfo(
        kind=kind, type=type_, count=count, bf16=_bf16(module, type_), fp16=True,
        dist_backend=_backend(kind), visible_var=var, visible=visible, plugin=plugin,
    ), None


def _bf16(module: Any, type_: str) -> bool:
    check = getattr(module, "is_bf16_supported", None)
    if check is not None:
        try:
            return bool(check())
        except Exception:
            return False
    import torch

    try:  # no query function: try the dtype on the card itself
        (torch.ones(2, dtype=torch.bfloat16, device=type_) * 2).sum().item()
        return True
    except Exception:
        return False


def _mps_bf16() -> bool:
    import torch

    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps").sum().item()
        return True
    except Exception:
        return False


def detect(accelerator: str = "auto") -> DeviceInfo:
    """The device this process should use.

    `auto` probes npu, mlu, musa, dcu, cuda, xpu, mps, then falls back to cpu. A named
    accelerator is probed alone; if it is missing the CPU is returned with a `note` that
    says why, so a cell still runs (slowly) and the runner can warn.
    """
    from ..config import ACCELERATORS

    if accelerator not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {accelerator!r}: use one of {', '.join(ACCELERATORS)}")
    if accelerator == "cpu":
        return _cpu()
    if not torch_available():
        note = None if accelerator == "auto" else f"accelerator = {accelerator!r} but torch is not installed on this site; install torch and the vendor plugin"
        return replace(_cpu(), note=note)
    candidates = PROBE_ORDER if accelerator == "auto" else (accelerator,)
    notes: list[str] = []
    for kind in candidates:
        info, why = _probe(kind)
        if info is not None:
            return replace(info, skipped=tuple(notes))
        if why:
            notes.append(why)
    if accelerator != "auto" and not notes:
        plugin = _PLUGINS[accelerator][0]
        missing = f"{plugin} is not installed" if plugin else f"this torch ({_torch_version()}) sees no {accelerator} device"
        notes.append(f"accelerator = {accelerator!r} but {missing}; running on the CPU")
    # `auto` with cards hidden on purpose is not worth a warning; a named accelerator is
    warn = notes if accelerator != "auto" else [why for why in notes if not why.endswith(_HIDDEN_TAIL)]
    return replace(_cpu(), note="; ".join(warn) or None, skipped=tuple(notes))


def info_for(device: str) -> DeviceInfo:
    """The `DeviceInfo` of an explicit torch device string such as "cuda:1", "npu" or "cpu"."""
    type_ = device.split(":", 1)[0]
    if type_ == "cpu":
        return _cpu()
    kind = type_
    if type_ == "cuda" and torch_available():
        import torch

        kind = "dcu" if getattr(torch.version, "hip", None) is not None else "cuda"
    if kind not in _PLUGINS:
        raise ValueError(f"unknown device {device!r}: use cpu or one of {', '.join(PROBE_ORDER)} (with an optional :index)")
    info = detect(kind)
    if info.kind != kind:
        raise RuntimeError(f"device {device!r} is not usable here: {info.note}")
    return info


def _torch_version() -> str:
    import torch

    return torch.__version__


def runner_globals(accelerator: str = "auto") -> dict[str, Any]:
    """`device`, `dtype` and `dist_backend` for a cell's namespace.

    Without torch these are plain strings (and torch is never imported, so a runner
    without torch starts fast); with torch they are `torch.device` and `torch.dtype`.
    A missing or card-less accelerator is a RuntimeWarning, never an exception.
    """
    info = detect(accelerator)
    if info.note:
        warnings.warn(f"jupyter_split: {info.note}", RuntimeWarning, stacklevel=2)
    if not torch_available():
        return {"device": info.device, "dtype": info.dtype, "dist_backend": info.dist_backend}
    import torch

    return {"device": torch.device(info.device), "dtype": getattr(torch, info.dtype), "dist_backend": info.dist_backend}


def describe(info: DeviceInfo) -> str:
    """One line for `%split doctor` and the runner's start-up message."""
    line = f"{info.kind}: {info.count} x {info.type}, dtype {info.dtype}, backend {info.dist_backend}"
    if info.visible_var and info.visible is not None:
        line += f", {info.visible_var}={info.visible}"
    if info.skipped:
        line += " (" + "; ".join(info.skipped) + ")"
    return line


def main(argv: list[str] | None = None) -> int:
    """`python -m jupyter_split.accelerators.devices [ACCELERATOR]`: what this machine has, as JSON (for doctor)."""
    import json
    import sys
    from dataclasses import asdict

    args = sys.argv[1:] if argv is None else argv
    info = detect(args[0] if args else "auto")
    print(json.dumps({**asdict(info), "device": info.device, "dtype": info.dtype, "summary": describe(info)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
