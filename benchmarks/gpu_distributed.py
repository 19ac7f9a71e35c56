"""GPU check for distributed cells, in one go: a cell under torchrun with the nccl backend.

    python benchmarks/gpu_distributed.py

On a CUDA machine with N >= 2 cards: `%%on home --gpus N` through the core on the local
executor (torchrun --standalone), an all_reduce on every card, the sum checked, rank 1's log
read back. With one card (NCCL allows one rank a card), the same runner path under torchrun
with one rank: the process group must come up on nccl and all_reduce on cuda:0.
It prints what it saw and exits non-zero on any mismatch; with `$OUT` set it writes
`$OUT/gpu_distributed.json`.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

CELL = (
    "import torch, torch.distributed as dist\n"
    "t = torch.full((1024, 1024), float(rank + 1), device=device)\n"
    "dist.all_reduce(t)\n"
    "print(rank, world_size, device, dist_backend, dist.get_backend(), t[0, 0].item())\n"
    "total = t[0, 0].item()"
)


def one_rank_under_torchrun(root: Path) -> tuple[str, str | None, float | None, list[dict]]:
    """The runner path a `--gpus N` cell takes, with one rank: torchrun, then a rank runner."""
    import subprocess

    from jupyter_split.config import load_config
    from jupyter_split.protocol import PAYLOAD_VAR
    from jupyter_split.runs.events import read_events

    run_dir = root / "run"
    run_dir.mkdir()
    request = {"run_id": "gpu-check", "code": CELL, "out": [], "timeout": None, "name": None,
               "has_in": False, "site": "home", "wandb": False, "env": {}}
    (run_dir / "request.json").write_text(json.dumps(request))
    payload = {"config": load_config().model_dump(mode="json"), "site": "home", "accelerator": "cuda"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
                    "-m", "jupyter_split.runner.launcher", "rank", "--", "--run-dir", str(run_dir), "--stdin-json"],
                   env={**os.environ, PAYLOAD_VAR: json.dumps(payload)}, timeout=300)
    events = read_events(run_dir)
    final = events[-1] if events else {}
    return final.get("state", "no events"), final.get("reason"), None, events


def main() -> int:
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        print("no CUDA device: this check runs on a lent GPU machine")
        return 2
    root = Path(tempfile.mkdtemp(prefix="jsgpu-"))
    os.environ["JUPYTER_SPLIT_DATA"] = str(root / "data")
    config = root / "jupyter_split.toml"
    config.write_text('[experiment]\nhome = "home"\ndefault_remote = "home"\n'
                      '[sites.home]\nexecutor = "local"\njurisdiction = "CN"\naccelerator = "cuda"\n')
    os.environ["JUPYTER_SPLIT_CONFIG"] = str(config)
    from jupyter_split.core.outcome import CellOptions
    from jupyter_split.core.split import Split

    started = time.perf_counter()
    if count >= 2:
        split = Split()
        events: list[dict] = []
        namespace: dict = {}
        outcome = split.execute(CELL, CellOptions(gpus=count, outputs=["total"]), namespace, events.append)
        state, reason, total = outcome.state, outcome.reason, namespace.get("total")
        rank1 = "".join(e["text"] for e in split.run_events(outcome.run_id, rank=1) if e["type"] == "stream")
    else:
        state, reason, total, events = one_rank_under_torchrun(root)
        rank1 = None
    printed = "".join(e["text"] for e in events if e["type"] == "stream")
    ranks = count if count >= 2 else 1
    want = ranks * (ranks + 1) / 2
    result = {"cards": count, "ranks": ranks, "state": state, "reason": reason, "rank0": printed.strip(),
              "rank1": rank1, "total": total, "want": want, "seconds": round(time.perf_counter() - started, 2)}
    ok = state == "succeeded" and printed.split()[-1:] == [str(want)] and " nccl nccl " in f" {printed} "
    result["ok"] = ok
    print(json.dumps(result, indent=1))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_distributed.json").write_text(json.dumps(result, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
