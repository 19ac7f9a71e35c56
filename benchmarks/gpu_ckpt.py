"""GPU check for portable checkpoints, in one go: bf16 saved on CUDA, loaded on the CPU and back.

    python benchmarks/gpu_ckpt.py [--size-gib 4] [--repeat 2]

What it does on a CUDA machine (a few GiB, well under three minutes):
1. `devices.detect()` and `runner_globals()` must say cuda, bf16, nccl.
2. A bf16 state dict on the GPU is saved with `ckpt.save` (hashing as it writes), and,
   side by side, with `torch.save` and `safetensors.torch.save_file`: save GB/s.
3. It loads on the CPU (bf16 widened to fp32, as the CPU lacks native bf16) and
   back onto CUDA (bf16 kept), every shard verified: load GB/s, values compared.
4. A corrupted shard must be refused, by name.
It prints a Markdown table and, where `$OUT` is set, writes `$OUT/gpu_ckpt.json`.

jupyter_split needs pydantic, which a bare CUDA image may lack: if `.whl/` (pydantic's
wheels for that Python) lies in the repository root, they are installed into a temp
folder first, with no network.
"""
from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _importable() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import pydantic  # noqa: F401
    except ImportError:
        wheels = sorted(glob.glob(str(ROOT / ".whl" / "*.whl")))
        if not wheels:
            raise SystemExit("pydantic is missing and no .whl/ folder with its wheels was carried; see this file's docstring")
        target = tempfile.mkdtemp(prefix="js-site-")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", target, *wheels], check=True)
        sys.path.insert(0, target)
        importlib.invalidate_caches()
    os.environ["JUPYTER_SPLIT_DATA"] = tempfile.mkdtemp(prefix="js-data-")  # audit log, no user config
    os.environ.pop("JUPYTER_SPLIT_CONFIG", None)


def _state(size_gib: float, device: str):
    import torch

    per = 8192 * 4096  # 64 MiB of bf16 per tensor
    count = max(1, int(size_gib * 2**30 // (per * 2)))
    gen = torch.Generator(device=device).manual_seed(0)
    return {f"layers.{i}.weight": torch.randn(8192, 4096, generator=gen, device=device, dtype=torch.bfloat16)
            for i in range(count)}


def _timed(fn, repeat: int, device: str):
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best, out = float("inf"), None
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, out


def _name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else device


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the same steps, to check the script off the GPU")
    args = parser.parse_args()
    dev = args.device
    _importable()
    import torch
    from safetensors.torch import save_file

    from jupyter_split import ckpt
    from jupyter_split.accelerators import devices

    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: run this on the GPU machine (or pass --device cpu for a dry run)")
    info = devices.detect()
    g = devices.runner_globals("auto")
    print("detect:", devices.describe(info), "| globals:", g)
    checks = {"detect finds the device, bf16 and its backend": (info.kind, info.bf16, info.dist_backend) == (
        ("cuda", True, "nccl") if dev == "cuda" else ("cpu", False, "gloo"))}
    if dev == "cuda":
        checks["runner globals are cuda:0, bfloat16"] = (str(g["device"]), g["dtype"]) == ("cuda:0", torch.bfloat16)
    state = _state(args.size_gib, dev)
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    gb = nbytes / 1e9
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="js-gpu-ckpt-") as tmp:
        url = str(Path(tmp) / "ckpt")
        seconds, manifest = _timed(lambda: ckpt.save(state, url, overwrite=True), args.repeat, dev)
        rates["save: jupyter_split.ckpt.save (hashed)"] = gb / seconds
        seconds, _ = _timed(lambda: torch.save(state, Path(tmp) / "peer.pt"), args.repeat, dev)
        rates["save: torch.save"] = gb / seconds
        seconds, _ = _timed(lambda: save_file(state, str(Path(tmp) / "peer.safetensors")), args.repeat, dev)
        rates["save: safetensors.save_file"] = gb / seconds
        checks["manifest says BF16 and the source device"] = (manifest.meta["dtypes"], manifest.meta["source_device"]) == (
            {"BF16": len(state)}, str(next(iter(state.values())).device))

        seconds, on_cpu = _timed(lambda: ckpt.load(url, device="cpu"), args.repeat, dev)
        rates["load to CPU (bf16 -> fp32, verified)"] = gb / seconds
        checks["CPU copy is fp32 and equal"] = all(
            on_cpu[k].dtype == torch.float32 and torch.equal(on_cpu[k], v.float().cpu()) for k, v in state.items())
        del on_cpu
        seconds, kept = _timed(lambda: ckpt.load(url, device="cpu", dtype=torch.bfloat16), args.repeat, dev)
        rates["load to CPU (bf16 kept, verified)"] = gb / seconds
        del kept
        seconds, back = _timed(lambda: ckpt.load(url, device=dev, dtype=torch.bfloat16), args.repeat, dev)
        rates[f"load back to {dev} (bf16, verified)"] = gb / seconds
        checks[f"{dev} copy is bf16 on {dev} and equal"] = all(
            back[k].dtype == torch.bfloat16 and back[k].device.type == dev and torch.equal(back[k], v) for k, v in state.items())
        if dev == "cuda":
            auto = ckpt.load(url)
            checks["device='auto' picks cuda and keeps bf16 there"] = all(
                t.is_cuda and t.dtype == torch.bfloat16 for t in auto.values())
            del auto
        del back

        shard = sorted(Path(url).glob("*.safetensors"))[-1]
        with open(shard, "r+b") as handle:
            handle.seek(-3, os.SEEK_END)
            byte = handle.read(1)
            handle.seek(-3, os.SEEK_END)
            handle.write(bytes([byte[0] ^ 0xFF]))
        try:
            ckpt.load(url, device=dev)
            checks["a corrupted shard is refused by name"] = False
        except ckpt.CheckpointError as exc:
            checks["a corrupted shard is refused by name"] = shard.name in str(exc)

    print(f"\n{len(state)} bf16 tensors, {nbytes / 2**30:.2f} GiB, on {_name(dev)}; best of {args.repeat}")
    print("| measure | GB/s |\n|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.2f} |")
    print("\n| check | ok |\n|---|---|")
    for name, ok in checks.items():
        print(f"| {name} | {'yes' if ok else 'NO'} |")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_ckpt.json").write_text(json.dumps(
            {"gib": nbytes / 2**30, "device": _name(dev), "torch": torch.__version__,
             "rates_gb_s": rates, "checks": checks}, indent=1))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
