"""The border's own cost: labels that follow the bytes and the content scan, on the pushes they guard.

Rows (issue 17's goals), each run pairwise and interleaved so a busy machine hurts both alike:
- push a 400 MB / 20-shard safetensors checkpoint abroad, guard on (resolution, fingerprint
  index, content scan) against the same push with the guard off: at most 1.10x;
- push a 10,000-file tree of small text files the same way: at most 1.5x;
- refresh the fingerprint index of 10,000 resident files unchanged since they were hashed
  (walk, stat, recorded hashes) against a plain `os.stat` walk of them: at most 2x.

`python -m benchmarks.policy_border --only fingerprints` runs the fingerprint rows alone (seconds).
"""
from __future__ import annotations

import os
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Callable

from jupyter_split import sync
from jupyter_split.config import load_config
from jupyter_split.residency.fingerprints import resident_index
from jupyter_split.sync import engine

SHARDS, SHARD_MB = 20, 20
SMALL_FILES = 10_000


def make_resident(pii: Path, count: int) -> None:
    """`count` small CSV files of people (the kind of data a resident folder holds), aged past the racy window."""
    old = time.time() - 120
    for i in range(count):
        folder = pii / f"batch{i % 50}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"people-{i}.csv"
        path.write_bytes(b"id,name,city,score\n" + b"".join(b"%d,person %d,city %d,%d\n" % (j, j + i, j % 7, j * i % 97)
                                                           for j in range(20 + i % 40)))
        os.utime(path, (old, old))


def make_checkpoint(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    for i in range(SHARDS):
        tensor = torch.randn(SHARD_MB * (1 << 20) // 4, generator=torch.Generator().manual_seed(i))
        save_file({f"layer{i}.weight": tensor}, str(folder / f"model-{i:05d}-of-{SHARDS:05d}.safetensors"),
                  metadata={"format": "pt"})


def make_small_tree(folder: Path, count: int = SMALL_FILES) -> None:
    for i in range(count):
        sub = folder / f"part{i % 100}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"log-{i}.txt").write_bytes(b"step %d loss %f lr %g note %s\n" % (i, 1 / (i + 1), 1e-4, b"x" * 40) * 60)


def guard_off() -> Callable[[], None]:
    """Take the guard out of the copy (the peer): returns the undo."""
    real = engine.check_residency
    engine.check_residency = lambda plan, src, dest, labels, config, *spool: set(labels)
    return lambda: setattr(engine, "check_residency", real)


def paired(ours: Callable[[], object], peer: Callable[[], object], repeat: int) -> tuple[float, float, float, float]:
    """Median times of each and the spread of their per-pair ratio: (ours, peer, min ratio, max ratio)."""
    ours(), peer()  # warm-up
    pairs = []
    for i in range(repeat):
        order = [(0, ours), (1, peer)] if i % 2 == 0 else [(1, peer), (0, ours)]
        took = [0.0, 0.0]
        for slot, fn in order:
            start = time.perf_counter()
            fn()
            took[slot] = time.perf_counter() - start
        pairs.append(took)
    ratios = [a / b for a, b in pairs]
    return (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs), min(ratios), max(ratios))


def make_sources(root: Path, small: int) -> tuple[Path, Path]:
    """The checkpoint and the small tree the push rows send."""
    make_checkpoint(root / "ckpt")
    make_small_tree(root / "small", small)
    return root / "ckpt", root / "small"


def push_rows(sources: tuple[Path, Path], dest_root: Path, repeat: int, residents: int) -> list[tuple[str, float, float, str]]:
    ckpt, tree = sources
    small = sum(1 for _ in tree.rglob("*.txt"))
    rows = []
    for what, src, goal in ((f"push {SHARDS} x {SHARD_MB} MB safetensors abroad", ckpt, "<= 1.10x"),
                            (f"push {small} small text files abroad", tree, "<= 1.5x")):
        def push() -> None:
            dest = dest_root / uuid.uuid4().hex
            sync.push(str(src), f"sg:{dest.name}", progress=False)
            shutil.rmtree(dest)

        def push_unguarded() -> None:
            undo = guard_off()
            try:
                push()
            finally:
                undo()
        ours, peer, low, high = paired(push, push_unguarded, repeat)
        rows.append((f"{what}, {residents} resident files, s (guard on vs off) [ratio {low:.2f}x to {high:.2f}x]",
                     ours, peer, goal))
    return rows


def stat_walk(top: Path) -> int:
    count = 0
    for folder, _, names in os.walk(top):
        for name in names:
            os.stat(os.path.join(folder, name))
            count += 1
    return count


def fingerprint_rows(pii: Path, repeat: int) -> list[tuple[str, float, float, str]]:
    """The index refreshed as a new process would (hashes from the record store) and as a
    notebook's next check does (this process's memo), each against an os.stat walk."""
    from jupyter_split.residency import fingerprints

    config = load_config()

    def refresh() -> None:
        index = resident_index(config)
        index.prefetch(index.sizes())  # every resident file's fingerprint

    def first_in_a_process() -> None:
        fingerprints._memo.clear()
        fingerprints._loaded.clear()  # as a new process: the saved fingerprints are read again
        refresh()

    refresh()  # hashes every file once and records it: the rows below find them unchanged
    count = stat_walk(pii)
    rows = []
    for what, fn in (("first check in a process (saved fingerprints)", first_in_a_process),
                     ("next check (memo)", refresh)):
        ours, peer, low, high = paired(fn, lambda: stat_walk(pii), repeat)
        rows.append((f"fingerprints of {count} unchanged resident files, {what}, vs an os.stat walk, s "
                     f"[ratio {low:.2f}x to {high:.2f}x]", ours, peer, "<= 2x"))
    return rows


def fingerprints_only(repeat: int = 7) -> list[tuple[str, float, float, str]]:
    """The fingerprint rows alone, on 10,000 resident files in a RAM-backed folder as `policy --border`
    makes them (the push rows take minutes; these take seconds, for comparing changes to the index)."""
    import tempfile

    from benchmarks.common import scratch_data_dir

    with scratch_data_dir(), tempfile.TemporaryDirectory(prefix="jsb-prints-", dir="/dev/shm") as tmp:
        root = Path(tmp)
        config = root / "jupyter_split.toml"
        config.write_text(f'[experiment]\nhome = "home"\ndefault_remote = "home"\n[sites.home]\njurisdiction = "CN"\n'
                          f'[policy]\nresident = ["{(root / "pii").as_uri()}/**"]\n')
        os.environ["JUPYTER_SPLIT_CONFIG"] = str(config)
        try:
            make_resident(root / "pii", SMALL_FILES)
            return fingerprint_rows(root / "pii", repeat)
        finally:
            os.environ.pop("JUPYTER_SPLIT_CONFIG", None)


if __name__ == "__main__":  # python -m benchmarks.policy_border --only fingerprints
    import sys

    from benchmarks.common import report

    if sys.argv[1:] != ["--only", "fingerprints"]:
        sys.exit("usage: python -m benchmarks.policy_border --only fingerprints  (the rest: python -m benchmarks policy --border)")
    print(report(fingerprints_only()))
