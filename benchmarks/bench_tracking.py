"""W&B tracking: the cost of `--wandb`, reading offline run files, listing an experiment's runs.

    python -m benchmarks tracking [--quick]
Peers: a cell that calls `wandb.init()`/`finish()` itself; decoding the same records with
protobuf alone (no framing, no folding into config/summary/history); `wandb sync --dry-run`,
W&B's own offline listing (which reads no run content).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import best_of, report, scratch_data_dir
from jupyter_split.tracking import offline as wandb_offline, sites as wandb_sites
from jupyter_split.core.outcome import CellOptions
from jupyter_split.core.split import Split

STEPS = "for step in range(200):\n    wandb.log({'loss': 1 / (step + 1), 'lr': 1e-4})\n"


def _quiet(event: dict) -> None:
    if event["type"] == "error":
        raise RuntimeError("\n".join(event["traceback"]))


def wandb_cell(split: Split, repeat: int) -> tuple[float, float]:
    ns: dict = {}
    ours = best_of(lambda: split.execute("import wandb\n" + STEPS, CellOptions(site="home", wandb=True), ns, _quiet), repeat)
    by_hand = "import wandb\nrun = wandb.init()\n" + STEPS + "run.finish()\n"
    peer = best_of(lambda: split.execute(by_hand, CellOptions(site="home"), ns, _quiet), repeat)
    return ours, peer


def read_run(rows: int, repeat: int) -> tuple[float, float, int]:
    from wandb.proto import wandb_internal_pb2 as pb

    with tempfile.TemporaryDirectory(prefix="jsb-wandb-") as root:
        code = ("import wandb\nrun = wandb.init(mode='offline', dir=%r, project='bench')\n"
                "for i in range(%d):\n    run.log({'loss': 1 / (i + 1), 'acc': i / %d, 'lr': 1e-4})\n"
                "run.finish()\nwandb.teardown()\n") % (root, rows, rows)
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env={**os.environ, "WANDB_SILENT": "true"})
        [path] = wandb_offline.find_run_files(root)
        data = path.read_bytes()
        payloads = list(wandb_offline.iter_payloads(data))

        def decode_only() -> None:
            for payload in payloads:
                pb.Record().ParseFromString(payload)

        ours = best_of(lambda: wandb_offline.load_run(path, data), repeat)
        peer = best_of(decode_only, repeat)
        return ours, peer, len(data)


def listing(split: Split, runs: int, repeat: int) -> tuple[float, float, int]:
    ns: dict = {}
    for _ in range(runs):
        split.execute("import wandb\nwandb.log({'loss': 0.5})", CellOptions(site="home", wandb=True), ns, _quiet)
    ours = best_of(lambda: wandb_sites.experiment_runs(split, history=False), repeat)
    folders = [str(p.parent) for p in Path(os.environ["JUPYTER_SPLIT_DATA"]).rglob("run-*.wandb")]
    dry = [sys.executable, "-m", "wandb", "sync", "--dry-run", *folders]
    peer = best_of(lambda: subprocess.run(dry, check=True, capture_output=True), repeat)
    return ours, peer, len(folders)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    os.environ["WANDB_MODE"] = "offline"
    with scratch_data_dir():
        split = Split()
        ours_cell, peer_cell = wandb_cell(split, 2 if quick else 5)
        ours_list, peer_list, listed = listing(split, 5 if quick else 20, 2 if quick else 5)
    rows = 2_000 if quick else 20_000
    ours_read, peer_read, size = read_run(rows, 3 if quick else 5)
    print(report([
        ("`--wandb` cell, 200 logs, offline (s)", ours_cell, peer_cell, "close to 1x: the wrapper adds little"),
        (f"read a run file of {rows} steps, {size / 1e6:.1f} MB (s)", ours_read, peer_read, "<= 20x decoding alone (every item is folded in Python)"),
        (f"list {listed} runs with content vs `wandb sync --dry-run` (s)", ours_list, peer_list, "faster than W&B's listing"),
    ]))
    return 0
