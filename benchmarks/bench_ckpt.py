"""Checkpoint save and load: jupyter_split.ckpt vs torch.save/torch.load vs safetensors, side by side.

The same bf16 state dict (default 2 GiB, `--size-mb` to scale) goes to a local folder
three ways. jupyter_split hashes every byte while writing and verifies every file on
load, by reading it (`verify='always'`, and the first load of a file) or, for a file
this machine hashed before and that is unchanged since, from that record (the
default, from the second load on); the peers do neither, so safetensors runs a second time with the sha256 of its
file taken after saving and before loading (`+sha256`), what verifying takes without
jupyter_split. Loads keep bf16 (`dtype=torch.bfloat16`) so all three return
the same tensors, and every loader's result is touched page by page, because
safetensors' `load_file` maps the file and would otherwise read nothing. Loads run three ways:
warm (each tool's files as its own save just left them in the page cache, loaded once
untimed: saved, then loaded again), cold (each file evicted from the page cache with
posix_fadvise before every load, so it comes from the disk through the loader's own reads)
and, for context, read back (evicted, then read whole by plain `read` calls, as another
program copying or hashing the files would leave them in the page cache).

    python -m benchmarks ckpt [--size-mb 2048] [--repeat 3] [--shard-mb 512]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from jupyter_split import ckpt, verified

from .common import report, scratch_data_dir


def _state(size_mb: int) -> dict[str, torch.Tensor]:
    """Transformer-like layers of 4096-wide bf16 matrices (32 MiB each) up to `size_mb`."""
    torch.manual_seed(0)
    rows = 4096
    per = rows * 4096 * 2
    return {f"layers.{i}.mlp.weight": torch.randn(rows, 4096).to(torch.bfloat16) for i in range(max(1, (size_mb << 20) // per))}


def _touch(state: dict[str, Any]) -> int:
    # one byte per 4 KiB page of every tensor: forces a mapped file to be read in
    return sum(int(t.reshape(-1).view(torch.uint8)[::4096].sum()) for t in state.values())


def _sha256_file(path: Path) -> str:
    # what verifying a safetensors file takes without jupyter_split: hash it, then load it
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _evict(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _read_all(root: Path) -> None:
    buffer = bytearray(16 << 20)
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb", buffering=0) as handle:
                while handle.readinto(buffer):
                    pass


def _time(fn: Callable[[], Any], repeat: int, before: Callable[[], None] = lambda: None) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None  # a mapped result would keep its pages in the page cache through `before`
        before()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks ckpt")
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shard-mb", type=int, default=512)
    args = parser.parse_args(argv)
    state = _state(args.size_mb)
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    gb = nbytes / 1e9
    with scratch_data_dir(), tempfile.TemporaryDirectory(prefix="jsb-ckpt-", dir="/tmp") as tmp:
        root = Path(tmp)
        url = (root / "ours").as_uri()
        saves = {
            "jupyter_split.ckpt.save": lambda: ckpt.save(state, url, max_shard_size=args.shard_mb << 20, overwrite=True),
            "torch.save": lambda: torch.save(state, root / "peer.pt"),
            "safetensors.save_file": lambda: save_file(state, root / "peer.safetensors"),
            "safetensors.save_file+sha256": lambda: (save_file(state, root / "peer2.safetensors"),
                                                     _sha256_file(root / "peer2.safetensors")),
        }
        loads = {  # each with the save that writes its files
            "jupyter_split.ckpt.load": ("jupyter_split.ckpt.save",
                                        lambda: ckpt.load(url, device="cpu", dtype=torch.bfloat16)),
            "jupyter_split.ckpt.load(verify='always')": ("jupyter_split.ckpt.save",
                                                         lambda: ckpt.load(url, device="cpu", dtype=torch.bfloat16,
                                                                           verify="always")),
            "torch.load": ("torch.save", lambda: torch.load(root / "peer.pt", weights_only=True)),
            "safetensors.load_file": ("safetensors.save_file", lambda: load_file(root / "peer.safetensors")),
            "safetensors.load_file+sha256": ("safetensors.save_file",
                                             lambda: (_sha256_file(root / "peer.safetensors"),
                                                      load_file(root / "peer.safetensors"))[1]),
        }
        speed: dict[str, float] = {}
        for name, fn in saves.items():
            seconds, _ = _time(fn, args.repeat)
            speed[name] = gb / seconds
        expected = _touch(state)
        for cache in ("warm", "cold", "read back"):
            for name, (save, fn) in loads.items():
                if cache == "warm":
                    # a host's proactive reclaim (DAMON's, here) pages out files left idle for a minute, and
                    # what comes back is cached as the reader's faults fetch it: so save again right before
                    saves[save]()
                if cache != "cold":
                    os.sync()  # writeback would otherwise slow whichever load comes first
                    time.sleep(verified.RACY_NS / 1e9)  # a file just written is hashed on its first load, not recorded
                    if cache == "read back":
                        _evict(root)
                        _read_all(root)
                    fn()
                seconds, out = _time(lambda fn=fn: (o := fn(), _touch(o))[0], args.repeat,
                                     (lambda: None) if cache != "cold" else lambda: _evict(root))
                if _touch(out) != expected or not all(torch.equal(out[k], v) for k, v in state.items()):
                    raise SystemExit(f"{name} returned different tensors")
                speed[f"{name} ({cache})"] = gb / seconds
                del out
        shutil.rmtree(root, ignore_errors=True)

    seconds, _ = _time(lambda: [hashlib.sha256(t.view(torch.uint8).numpy()).digest() for t in state.values()], args.repeat)
    speed["sha256 alone, one thread (the floor of verifying)"] = gb / seconds
    print(f"state: {len(state)} bf16 tensors, {nbytes / 2**30:.2f} GiB; best of {args.repeat}; GB/s (higher is better)")
    for name, value in speed.items():
        print(f"  {name:50s} {value:6.2f} GB/s")
    rows = []
    loads_rows = [("", "", cache) for cache in ("warm", "cold", "read back")]
    loads_rows += [(", verify='always',", "(verify='always')", cache) for cache in ("warm", "cold")]
    for verb, ours, peers in (
        ("save", "jupyter_split.ckpt.save", ("torch.save", "safetensors.save_file", "safetensors.save_file+sha256")),
        *((f"{cache} load{how}", f"jupyter_split.ckpt.load{arg} ({cache})",
           (f"torch.load ({cache})", f"safetensors.load_file ({cache})", f"safetensors.load_file+sha256 ({cache})"))
          for how, arg, cache in loads_rows),
    ):
        for peer in peers:
            goal = ("(every byte hashed)" if "always" in verb else
                    "(the peer verifying too)" if "+sha256" in peer else
                    "(context: cached by another program's reads)" if "read back" in verb else ">= 0.9x the faster peer")
            rows.append((f"{verb} GB/s vs {peer.split(' (')[0]}", speed[ours], speed[peer], goal))
    print(report(rows))
    return 0
