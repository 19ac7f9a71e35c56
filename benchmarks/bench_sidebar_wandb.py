"""The sidebar's W&B poll: GET /jupyter-split/wandb with 10, 50 and 200 ended runs that each wrote a W&B run.

    python -m benchmarks sidebar_wandb [--rounds R] [--calls K] [--sizes 10,50,200] [--steps N] [--peer-rev REV]

The sidebar polls it every 2 s (the newest 200 runs of the experiment). One real offline W&B run file
(wandb itself, `--steps` logged steps) is copied into each run's directory and listed in its
`status.json`, as a runner records it. Measured through real jupyter_servers over a kept-alive
connection, each poll sending back the ETag it got (`If-None-Match`): ours reads a W&B file again
only when its size or time changed; the peer is the same endpoint of the code before that
(`--peer-rev`), which read every run's status.json and W&B file whole at each poll.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_sidebar import get, peer_code, start, unchanged_polls
from benchmarks.common import markdown_table
from jupyter_split.runs.index import RunIndex, RunRecord

#: the commit before the W&B poll kept what it read
PEER_REV = "20e0a4c"
EXPERIMENT = "split-demo"  # the built-in default's experiment: the servers run with no config

WANDB_RUN = """
import sys, wandb
run = wandb.init(project="bench", group=sys.argv[1], job_type="train", mode="offline", dir=sys.argv[2])
for step in range(int(sys.argv[3])):
    run.log({"loss": 1 / (step + 1), "eval/acc": step / 1e4, "lr": 1e-4})
run.finish()
"""


def wandb_file(into: Path, steps: int) -> Path:
    """One offline W&B run file of `steps` logged steps, made by wandb itself."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-c", WANDB_RUN, EXPERIMENT, str(into), str(steps)], check=True, env=env,
                   capture_output=True, timeout=600)
    [found] = into.rglob("run-*.wandb")
    return found


def fill(data: Path, count: int, source: Path) -> None:
    """`count` ended runs of the experiment on the home site, each with a copy of `source` as its W&B file."""
    index = RunIndex(data / "index.sqlite")
    now = time.time()
    for i in range(count):
        run_id = f"{EXPERIMENT}-home-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now - 60 * (count - i)))}-{i:06x}"
        run_dir = data / "sites" / "home" / "runs" / run_id
        (run_dir / "wandb").mkdir(parents=True)
        shutil.copy(source, run_dir / "wandb" / f"run-{i:06x}.wandb")
        (run_dir / "status.json").write_text(json.dumps({"state": "succeeded", "wandb": [f"wandb/run-{i:06x}.wandb"]}))
        index.add(RunRecord(run_id=run_id, site="home", run_dir=str(run_dir), mode="detached", state="succeeded",
                            created=now - 60 * (count - i)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sidebar_wandb")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--sizes", default="10,50,200")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--peer-rev", default=PEER_REV, help="the commit whose endpoint is the peer")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="jsb-wandb-", dir="/tmp"))
    load = os.getloadavg()[0]
    rows: dict[str, list[str]] = {}
    try:
        source = wandb_file(root / "made", args.steps)
        home = root / "home"
        home.mkdir()
        code = peer_code(args.peer_rev, root / "peer")
        for size in sizes:
            ours_data, peer_data = root / f"n{size}", root / f"p{size}"
            fill(ours_data, size, source)
            shutil.copytree(ours_data, peer_data)  # the same runs; the index's run_dir still names ours
            ours, peer = start(ours_data, home), start(peer_data, home, code)
            try:
                ours.ready(), peer.ready()
                path = "/jupyter-split/wandb"
                polls = {"ours": (ours, get(ours, path)[1]), "peer": (peer, get(peer, path)[1])}
                shown = json.loads(get(ours, path)[3])["runs"]
                assert len(shown) == size and json.loads(get(peer, path)[3])["runs"] == shown, "ours and the peer differ"
                unchanged_polls(polls, path, args.rounds, args.calls, rows)
            finally:
                ours.stop(), peer.stop()
        made = source.stat().st_size
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"# sidebar_wandb: unchanged polls (If-None-Match, 304) of GET /jupyter-split/wandb, {args.rounds} rounds x "
          f"{args.calls} GETs, median of the round medians; each run's W&B file {made:,} B ({args.steps} steps); "
          f"peer: the code at {args.peer_rev}; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    names = {"ours": "ours: a file read again only when it changed", "peer": "peer: every file read at each poll",
             "ratio": "ours / peer [spread]"}
    print(markdown_table(["poll", *(f"{s:,} W&B runs" for s in sizes)], [[label, *rows[key]] for key, label in names.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
