"""Residency: what the guard, the taint hook and the audit log cost, next to what they guard.

    python -m benchmarks policy [--quick] [--border]

`--border` runs only the border's rows (benchmarks/policy_border.py): pushes abroad with the
guard on against the guard off, and the fingerprint index against an `os.stat` walk.
No tool in the ML stack checks residency, so the peers are the work each check rides on:
reading files with no hook installed, `os.path.realpath` plus `fnmatch` (the least a
path check can do), the sync copy the guard precedes, cloudpickle of the variables
`check_objects` precedes, and a `logging` file handler (no fsync) for the audit log.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import cloudpickle
import torch

from benchmarks.common import best_of, report, scratch_data_dir
from jupyter_split import policy, sync
from jupyter_split.config import Config, Experiment, Policy, SiteConfig
from jupyter_split.residency.audit import append_record

READER = """
import sys, time
from pathlib import Path
root, tracked = Path(sys.argv[1]), sys.argv[2] == "1"
if tracked:
    from jupyter_split import policy
    policy.start_taint_tracking()
files = sorted(root.rglob("*.bin"))
start = time.perf_counter()
for _ in range(3):
    for path in files:
        with open(path, "rb") as handle:
            handle.read()
print(time.perf_counter() - start)
"""


def config_for(root: Path) -> Config:
    return Config(
        experiment=Experiment(name="bench", home="home", default_remote="sg"),
        sites={"home": SiteConfig(jurisdiction="CN", storage=(root / "home").as_uri()),
               "sg": SiteConfig(jurisdiction="SG", storage=(root / "sg").as_uri())},
        policy=Policy(resident=[(root / "pii").as_uri() + "/**", "oss://corp-pii/**", "s3://*-pii/**"],
                      audit_log=str(root / "audit.jsonl")),
    )


def make_files(root: Path, count: int, depth: int, size: int = 4096) -> None:
    for i in range(count):
        folder = root.joinpath(*[f"d{j}" for j in range(depth)], f"g{i % 20}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.bin").write_bytes(b"x" * size)


def reads(root: Path, rounds: int = 5) -> tuple[float, float]:
    """Best of `rounds` interpreters each way, interleaved, so a busy machine hurts both alike."""
    def one(tracked: bool) -> float:
        done = subprocess.run([sys.executable, "-c", READER, str(root), "1" if tracked else "0"],
                              capture_output=True, text=True, check=True)
        return float(done.stdout.strip())
    pairs = [(one(True), one(False)) for _ in range(rounds)]
    return min(p[0] for p in pairs), min(p[1] for p in pairs)


def path_checks(root: Path, n: int) -> tuple[float, float]:
    config = config_for(root)
    paths = [f"{root}/data/run{i}/../shard-{i}.bin" for i in range(n)]
    globs = [g.removeprefix("file://") for g in config.policy.resident]
    ours = best_of(lambda: [policy.labels_for_url(p, config) for p in paths], repeat=3) / n
    peer = best_of(lambda: [any(fnmatch.fnmatch(os.path.realpath(p), g) for g in globs) for p in paths], repeat=3) / n
    return ours, peer


def guard_vs_copy(root: Path, files: int) -> tuple[float, float]:
    config = config_for(root)
    src = root / "home" / "ckpt"
    make_files(src, files, 1)
    names = [str(p.relative_to(src)) for p in src.rglob("*.bin")]
    counter = iter(range(1_000_000))
    ours = best_of(lambda: policy.check_copy(str(src), str(root / "sg" / "ckpt"), [], 1, "ckpt", files=names,
                                             config=config), repeat=3)
    peer = best_of(lambda: sync.copy(str(src), str(root / "home" / f"copy{next(counter)}"), progress=False,
                                     config=config), repeat=3)
    return ours, peer


def objects_vs_pickle(root: Path) -> tuple[float, float]:
    config = config_for(root)
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(100)])
    state = model.state_dict()
    ours = best_of(lambda: policy.check_objects({"state": state, "model": model}, "home", config=config), repeat=5)
    peer = best_of(lambda: cloudpickle.dumps({"state": state, "model": model}), repeat=5)
    return ours, peer


def audit_vs_logging(root: Path, n: int) -> tuple[float, float]:
    record = {"kind": "copy", "item": "s3://b/ckpt/step-100", "bytes": 123456789, "decision": "allowed",
              "from_site": "sg", "to_site": "home", "labels": [], "reason": "no residency label"}
    path = root / "audit-bench.jsonl"
    ours = best_of(lambda: [append_record(path, record) for _ in range(n)], repeat=3) / n
    logger = logging.getLogger("bench-audit")
    handler = logging.FileHandler(root / "logging-bench.log")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    line = str(record)
    try:
        peer = best_of(lambda: [logger.info(line) for _ in range(n)], repeat=3) / n
    finally:
        logger.removeHandler(handler)
        handler.close()
    return ours, peer


def border(quick: bool) -> list[tuple[str, float, float, str]]:
    """The border's rows, on a RAM-backed folder (this disk's file creation swings too much to compare)."""
    from benchmarks import policy_border

    with scratch_data_dir(), tempfile.TemporaryDirectory(prefix="jsb-border-", dir="/dev/shm") as tmp:
        root = Path(tmp)
        (root / "sg").mkdir()
        (root / "jupyter_split.toml").write_text(textwrap.dedent(f"""
            [experiment]
            home = "home"
            default_remote = "sg"
            [sites.home]
            jurisdiction = "CN"
            storage = "{(root / 'home').as_uri()}"
            [sites.sg]
            jurisdiction = "SG"
            storage = "{(root / 'sg').as_uri()}"
            [policy]
            resident = ["{(root / 'pii').as_uri()}/**"]
            """))
        os.environ["JUPYTER_SPLIT_CONFIG"] = str(root / "jupyter_split.toml")
        try:
            repeat = 3 if quick else 5
            sources = policy_border.make_sources(root / "src", 1000 if quick else 10_000)
            rows = []
            for residents in (100, 1000) if quick else (1000, 10_000):  # the guard walks the resident set each push
                policy_border.make_resident(root / "pii", residents)
                rows += policy_border.push_rows(sources, root / "sg", repeat, residents)
            rows += policy_border.fingerprint_rows(root / "pii", repeat + 2)
        finally:
            os.environ.pop("JUPYTER_SPLIT_CONFIG", None)
    return rows


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    if "--border" in argv:
        print(report(border(quick)))
        return 0
    with scratch_data_dir(), tempfile.TemporaryDirectory(prefix="jsb-pol-") as tmp:
        root = Path(tmp)
        config_file = root / "jupyter_split.toml"
        config_file.write_text(textwrap.dedent(f"""
            [experiment]
            home = "home"
            default_remote = "sg"
            [sites.home]
            jurisdiction = "CN"
            [sites.sg]
            jurisdiction = "SG"
            [policy]
            resident = ["{(root / 'pii').as_uri()}/**"]
            """))
        os.environ["JUPYTER_SPLIT_CONFIG"] = str(config_file)
        count = 300 if quick else 2000
        make_files(root / "shallow", count, 0)
        make_files(root / "deep", count, 6)
        make_files(root / "large", count // 10, 0, size=1 << 20)
        rows = []
        ours, peer = reads(root / "shallow")
        rows.append((f"read {count} x 4 KiB files x3, s (taint hook vs none)", ours, peer, "< 2.5x (~20 us an open)"))
        ours, peer = reads(root / "deep")
        rows.append(("same, files 7 folders deep, s (manifest search)", ours, peer, "< 3x"))
        ours, peer = reads(root / "large")
        rows.append((f"read {count // 10} x 1 MiB files x3, s (taint hook vs none)", ours, peer, "< 1.1x"))
        ours, peer = path_checks(root, 200 if quick else 2000)
        rows.append(("labels_for_url per path, s (vs realpath + fnmatch)", ours, peer, "< 50x, < 1 ms"))
        ours, peer = guard_vs_copy(root, 100 if quick else 1000)
        rows.append((f"check_copy of {100 if quick else 1000} files vs their local sync.copy, s", ours, peer, "< 0.2x"))
        ours, peer = objects_vs_pickle(root)
        rows.append(("check_objects(model + state_dict) vs cloudpickle of them, s", ours, peer, "< 0.5x"))
        ours, peer = audit_vs_logging(root, 50 if quick else 300)
        rows.append(("audit record (fsync'd, locked) vs logging.FileHandler line, s", ours, peer, "durable; < 5 ms"))
        os.environ.pop("JUPYTER_SPLIT_CONFIG", None)
    rows += border(quick)
    print(report(rows))
    return 0
