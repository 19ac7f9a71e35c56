"""The sidebar's checkpoints poll: GET /jupyter-split/checkpoints with 50, 200 and 1,000 published checkpoints.

    python -m benchmarks sidebar_checkpoints [--rounds R] [--calls K] [--sizes 50,200,1000] [--peer-rev REV]

The sidebar polls it every 2 s while its checkpoints pane is open. The checkpoints are published by
`sync.copy` on the built-in default's two sites (their storage is on this machine), half on each, each
of 10 files in two folders, as a training loop's `ckpt.save` leaves them. Measured through real
jupyter_servers over a kept-alive connection, each poll sending back the ETag it got
(`If-None-Match`, a 304 when nothing changed). Ours lists a storage on this machine with
`os.scandir` and reads a manifest again only when its size or time changed; the peer is the same
endpoint of the code before that (`--peer-rev`), which listed with fsspec's glob and read every
manifest at each poll. Then a checkpoint published by another process must show at the next poll.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_sidebar import get, peer_code, start, unchanged_polls
from benchmarks.common import markdown_table
from jupyter_split import sync

#: the commit before the listing kept what it read
PEER_REV = "ea16a32"


def fill(data: Path, count: int) -> None:
    """`count` published checkpoints under the default sites' storage in `data`, half on each site."""
    src = data.parent / "ckpt-source"
    if not src.exists():
        for i in range(8):
            (src / "shards").mkdir(parents=True, exist_ok=True)
            (src / "shards" / f"shard-{i}.bin").write_bytes(os.urandom(4096))
        (src / "config.json").write_text("{}")
        (src / "optimizer.bin").write_bytes(os.urandom(4096))
    for i in range(count):
        site = ("home", "abroad")[i % 2]
        sync.copy(str(src), str(data / "storage" / site / f"exp/run-{i:05d}/step-{i * 100}"), progress=False)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sidebar_checkpoints")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--peer-rev", default=PEER_REV, help="the commit whose endpoint is the peer")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="jsb-ckpts-", dir="/tmp"))
    load = os.getloadavg()[0]
    rows: dict[str, list[str]] = {}
    path = "/jupyter-split/checkpoints"
    try:
        home = root / "home"
        home.mkdir()
        code = peer_code(args.peer_rev, root / "peer")
        for size in sizes:
            ours_data, peer_data = root / f"n{size}", root / f"p{size}"
            fill(ours_data, size)
            shutil.copytree(ours_data, peer_data)
            ours, peer = start(ours_data, home), start(peer_data, home, code)
            try:
                ours.ready(), peer.ready()
                shown = len(json.loads(get(ours, path)[3])["checkpoints"])
                assert shown == min(size, 100) == len(json.loads(get(peer, path)[3])["checkpoints"]), shown
                polls = {"ours": (ours, get(ours, path)[1]), "peer": (peer, get(peer, path)[1])}
                unchanged_polls(polls, path, args.rounds, args.calls, rows)
                # a checkpoint published meanwhile by another process shows at the next poll
                fill_one = ours_data / "storage" / "home" / "exp" / "new-run" / "step-1"
                sync.copy(str(root / "ckpt-source"), str(fill_one), progress=False)
                began = time.perf_counter()
                status, _, _, body = get(ours, path, polls["ours"][1])
                seconds = time.perf_counter() - began
                names = [row["name"] for row in json.loads(body)["checkpoints"]] if status == 200 else []
                rows.setdefault("change", []).append(
                    f"{seconds * 1000:.1f} ms, {'shown' if 'exp/new-run/step-1' in names else 'NOT shown'}")
            finally:
                ours.stop(), peer.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"# sidebar_checkpoints: unchanged polls (If-None-Match, 304) of GET {path}, {args.rounds} rounds x "
          f"{args.calls} GETs, median of the round medians; peer: the code at {args.peer_rev}; load average "
          f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    names = {"ours": "ours: a manifest read again only when it changed", "peer": "peer: glob and every manifest read",
             "ratio": "ours / peer [spread]", "change": "ours: a checkpoint published meanwhile, the next poll"}
    print(markdown_table(["poll", *(f"{s:,} checkpoints" for s in sizes)], [[label, *rows[key]] for key, label in names.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
