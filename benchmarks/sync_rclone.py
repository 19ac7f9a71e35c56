"""`python -m benchmarks sync --rclone`: the sync engine against rclone on loopback (issue 20).

No link model: a real sshd and a moto_server on 127.0.0.1, in rounds that alternate the tools
(`rounds` of `benchmarks/sync_link.py`), each into an empty destination where the row copies
afresh. rclone is Debian's package with its hash check on (its default: after each transfer it
compares the source's MD5 with the SFTP server's `md5sum` over ssh, or with S3's ETag; the
script checks its `-vv` log says so), and again with `--ignore-checksum` where that is cheap.
Ours is `jupyter_split.sync.copy` in this process (it hashes every byte and verifies every file),
but for the no-op re-sync, which runs `jupyter-split push` as a user does, process start included:
once in its own process, and once handed to a running agent (`jupyter-split agent start`).
Ours runs under the default config, whose residency guard scans the content of every file bound
for a URL of no known site (that is, every file here but the no-op's, pushed to a site at home).
Rows: the checkpoint (N MB in 20 safetensors shards, as `jupyter_split.ckpt` writes one) local disk
to SFTP, local disk to S3 and S3 to SFTP; the same for an opaque checkpoint (20 files of random bytes
in no format the scanner knows, so the guard's scan reads every byte before the first one leaves); a
no-op re-sync of it to SFTP (rclone: `rclone copy` again, its size-and-modtime check); one shard
rewritten (same size) then re-synced to SFTP; the small tree S3 to SFTP. Each cell is the median
second and, in brackets, the lowest and highest round; the ratio is ours over rclone's, per round.
Every destination is compared byte for byte with the source, so no row passes by copying nothing.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from benchmarks.bench_sync import sha_tree, write_shards, write_small_tree
from benchmarks.common import markdown_table, scratch_data_dir
from benchmarks.sync_link import _spread, rclone, rclone_config, rounds
from jupyter_split import sync
from tests.services.s3 import start_s3
from tests.services.sshd import start_sshd, stop_sshd

HEADER = ["measure", "jupyter_split", "rclone", "rclone --ignore-checksum", "ratio (spread)", "goal"]
NO_CHECK = "rclone --ignore-checksum"


def rclone_rows(total_mb: int, small_files: int, count: int, small_count: int | None = None) -> int:
    """Print the loopback rows against rclone; the small tree gets `small_count` rounds (default `count`)."""
    if shutil.which("rclone") is None:
        print("rclone is not installed: run `bash .ci/setup bench` (as root, or `apt-get install rclone`)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="jsb-rclone-") as tmp, scratch_data_dir():
        root = Path(tmp)
        server = start_sshd(root / "sshd")
        s3 = start_s3(root, "s3")
        try:
            rows, notes = Loopback(root, server, s3).run(total_mb, small_files, count, small_count or count)
        finally:
            s3.stop()
            stop_sshd(server)
    print(f"\ncheckpoint {total_mb} MiB in 20 shards, {small_files} small files; {count} rounds "
          f"({small_count or count} for the small tree); seconds\n")
    print(markdown_table(HEADER, rows))
    print("\n" + "\n".join(notes))
    return 0


class Loopback:
    """The servers, rclone's remotes (`link`: the sshd; `moto`: the S3 server, from the environment) and the rows."""

    def __init__(self, root: Path, server, s3) -> None:
        self.root, self.server, self.s3 = root, server, s3
        self.sftp = {"username": server.user, "client_keys": [server.identity_file], "known_hosts": server.known_hosts}
        self.conf = rclone_config(root / "rclone.conf", server, server.port, server.known_hosts)
        # the keys in no file and on no command line; this shell's AWS_ variables are not rclone's
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        moto = {"TYPE": "s3", "PROVIDER": "Other", "ENDPOINT": s3.endpoint_url, "ACCESS_KEY_ID": s3.key,
                "SECRET_ACCESS_KEY": s3.secret}
        self.env = {**base, **{f"RCLONE_CONFIG_MOTO_{k}": v for k, v in moto.items()}}
        self.env_no_check = {**self.env, "RCLONE_IGNORE_CHECKSUM": "true"}
        self.s3fs = s3.filesystem()
        self.serial = itertools.count()

    def url(self, path: Path) -> str:
        return f"ssh://127.0.0.1:{self.server.port}{path}"

    def peers(self, src: str, dest: Callable[[str], str], check: bool = True) -> dict[str, Callable[[], None]]:
        """rclone copying `src` to `dest(name)`, with its hash check (unless not `check`) and without it."""
        tools = {"rclone": lambda: rclone(self.conf, src, dest("rclone"), self.env)} if check else {}
        return {**tools, NO_CHECK: lambda: rclone(self.conf, src, dest(NO_CHECK), self.env_no_check)}

    def run(self, total_mb: int, small_files: int, count: int, small_count: int) -> tuple[list[list[str]], list[str]]:
        root, s3 = self.root, self.s3
        shards, opaque, small = root / "shards", root / "opaque", root / "small"
        write_shards(shards, total_mb)
        write_shards(opaque, total_mb, opaque=True)
        write_small_tree(small, small_files)
        s3.make_bucket("bench")
        notes = self.hash_checks(shards)
        rows = self.checkpoint_rows(shards, "checkpoint", count)
        rows += self.checkpoint_rows(opaque, "opaque checkpoint (every byte scanned)", count)
        rows += self.resync_rows(shards, count)

        # the small tree, S3 to SFTP, against rclone without its hash check only: with it, rclone runs
        # `md5sum` over ssh once a file (about 70 ms a file here: over 10 minutes a round)
        sync.copy(str(small), "s3://bench/small", dest_options=s3.storage_options, progress=False)
        there = {"ours": root / "small-ours", NO_CHECK: root / "small-rclone"}
        times = rounds({"ours": lambda: sync.copy("s3://bench/small", self.url(there["ours"]), s3.storage_options,
                                                  self.sftp, progress=False),
                        **self.peers("moto:bench/small", lambda name: f"link:{there[name]}", check=False)},
                       there, small_count)
        assert all(sha_tree(path) == sha_tree(small) for path in there.values())
        rows.append(_row(f"{small_files} small files, S3 to SFTP", times, "<= 1x"))
        return rows, notes

    def checkpoint_rows(self, shards: Path, what: str, count: int) -> list[list[str]]:
        """The checkpoint in `shards` local disk to SFTP, local disk to S3, and S3 to SFTP."""
        root, s3, rows = self.root, self.s3, []
        expected = sha_tree(shards)
        there = {name: root / f"up-{i}" for i, name in enumerate(("ours", "rclone", NO_CHECK))}
        times = rounds({"ours": lambda: sync.copy(str(shards), self.url(there["ours"]), dest_options=self.sftp, progress=False),
                        **self.peers(str(shards), lambda name: f"link:{there[name]}")}, there, count)
        assert all(sha_tree(path) == expected for path in there.values())
        rows.append(_row(f"{what}, local disk to SFTP", times, "<= 1x"))
        for path in there.values():
            shutil.rmtree(path)

        # local disk to S3: a new prefix every round, the last of each tool compared
        last: dict[str, str] = {}

        def prefix(name: str) -> str:
            last[name] = f"bench/up-{next(self.serial)}"
            return last[name]
        times = rounds({"ours": lambda: sync.copy(str(shards), "s3://" + prefix("ours"), dest_options=s3.storage_options,
                                                  progress=False),
                        **self.peers(str(shards), lambda name: "moto:" + prefix(name))},
                       {name: root / "unused" for name in ("ours", "rclone", NO_CHECK)}, count)
        self.s3fs.invalidate_cache()
        assert all(self.sha_s3(path) == expected for path in last.values())
        self.s3fs.rm([p for p in self.s3fs.ls("bench") if p.startswith("bench/up-")], recursive=True)
        rows.append(_row(f"{what}, local disk to S3", times, "<= 1x"))

        # S3 to SFTP
        sync.copy(str(shards), "s3://bench/ck", dest_options=s3.storage_options, progress=False)
        there = {name: root / f"from-s3-{i}" for i, name in enumerate(("ours", "rclone", NO_CHECK))}
        times = rounds({"ours": lambda: sync.copy("s3://bench/ck", self.url(there["ours"]), s3.storage_options, self.sftp,
                                                  progress=False),
                        **self.peers("moto:bench/ck", lambda name: f"link:{there[name]}")}, there, count)
        assert all(sha_tree(path) == expected for path in there.values())
        rows.append(_row(f"{what}, S3 to SFTP", times, "<= 1x"))
        for path in there.values():
            shutil.rmtree(path)
        self.s3fs.rm("bench/ck", recursive=True)
        return rows

    def resync_rows(self, shards: Path, count: int) -> list[list[str]]:
        """A no-op re-sync of the published checkpoint to SFTP (ours: `jupyter-split push`, a process
        of its own), then one shard rewritten, same size, and re-synced (ours: `sync.copy`)."""
        root = self.root
        config = root / "split.toml"
        options = json.dumps(self.sftp)[1:-1].replace('": ', '" = ')
        config.write_text(f'[experiment]\nhome = "home"\ndefault_remote = "far"\n\n[sites.home]\njurisdiction = "CN"\n\n'
                          f'[sites.far]\njurisdiction = "CN"\nstorage = "{self.url(root / "far")}"\n'
                          f"storage_options = {{ {options} }}\n")
        script = Path(sys.executable).with_name("jupyter-split")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "jupyter_split.cli"]
        env = {**os.environ, "JUPYTER_SPLIT_CONFIG": str(config)}
        # the command runs from compiled bytecode, as an installed package does: with
        # PYTHONDONTWRITEBYTECODE (set on some development machines) every run compiled all of
        # jupyter_split's modules again (about 0.2 s here); the cache goes to the scratch folder
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        push = lambda: subprocess.run([*command, "push", str(shards), "far:ckpt", "--quiet"], env=env,  # noqa: E731
                                      check=True, capture_output=True)
        there = {"ours": root / "far" / "ckpt", "rclone": root / "again-rclone", NO_CHECK: root / "again-plain"}
        peers = self.peers(str(shards), lambda name: f"link:{there[name]}")
        push()
        for run in peers.values():
            run()
        unused = {name: root / "unused" for name in there}
        times = rounds({"ours": push, **peers}, unused, count)
        assert all(sha_tree(path) == sha_tree(shards) for path in there.values())
        rows = [_row(f"no-op re-sync of the {len(list(shards.iterdir()))} shards to SFTP (ours: `jupyter-split push` "
                     "in its own process, rclone: its size-and-modtime check)", times, "<= 2x")]
        # the same command handed to a running agent (`jupyter-split agent start`), whose imports are done
        subprocess.run([*command, "agent", "start"], env=env, check=True, capture_output=True)
        try:
            handed = rounds({"ours": push, **peers}, unused, count)
            status = subprocess.run([*command, "agent", "status"], env=env, capture_output=True, text=True).stdout
        finally:
            subprocess.run([*command, "agent", "stop"], env=env, capture_output=True)
        assert f"{count} command(s) served" in status, f"the agent ran each round's push: {status}"
        rows.append(_row("the same no-op, `jupyter-split push` handed to the agent (`jupyter-split agent start`)",
                         handed, "<= 2x"))
        shard = sorted(shards.iterdir())[7]
        size = shard.stat().st_size
        changed: dict[str, list[float]] = {name: [] for name in there}
        with open(shard, "rb") as f:
            head = f.read(8)
            header = head + f.read(int.from_bytes(head, "little"))
        for i in range(count):  # the same tensors, new values
            shard.write_bytes(header + random.Random(100 + i).randbytes(size - len(header)))
            once = rounds({"ours": lambda: sync.copy(str(shards), self.url(there["ours"]), dest_options=self.sftp,
                                                     progress=False), **peers}, unused, 1)
            for name, seconds in once.items():
                changed[name] += seconds
            assert all(sha_tree(path) == sha_tree(shards) for path in there.values())
        rows.append(_row("one shard changed (same size), re-sync to SFTP", changed, "<= 1x"))
        return rows

    def sha_s3(self, prefix: str) -> dict[str, str]:
        """`sha_tree` of an S3 prefix (`bucket/path`)."""
        return {path[len(prefix) + 1:]: hashlib.sha256(self.s3fs.cat_file(path)).hexdigest()
                for path in self.s3fs.find(prefix) if not path.endswith("/manifest.json")}

    def hash_checks(self, shards: Path) -> list[str]:
        """What rclone's `-vv` log says it checked after copying one shard to SFTP and to S3, with its
        hash check and without (this also leaves its detected shell and hash commands in its config)."""
        one = str(sorted(shards.iterdir())[0])
        notes = []
        for what, dest in (("SFTP", f"link:{self.root / 'probe'}"), ("S3", "moto:bench/probe")):
            for flag, env in (("", self.env), (" --ignore-checksum", self.env_no_check)):
                log = subprocess.run(["rclone", "copy", "-vv", one, dest, "--config", str(self.conf)], env=env,
                                     capture_output=True, text=True, check=True).stderr
                shutil.rmtree(self.root / "probe", ignore_errors=True)
                if self.s3fs.exists("bench/probe"):
                    self.s3fs.rm("bench/probe", recursive=True)
                checks = re.findall(r": (md5|sha1) = \w+ OK", log)
                remote = sorted(set(re.findall(r"Running remote command: (md5sum|sha1sum) /", log)))
                notes.append(f"rclone{flag} to {what}: {len(checks)} hash check(s) logged ({', '.join(checks) or 'none'})"
                             + (f", remote command {', '.join(remote)}" if remote else ""))
        return notes


def _row(what: str, times: dict[str, list[float]], goal: str) -> list[str]:
    """Each tool's seconds; ours over rclone's per round (over rclone --ignore-checksum's where rclone did not run)."""
    ratio = {name: _spread([o / p for o, p in zip(times["ours"], times[name])], 2, "x") for name in times}
    cells = [_spread(times[name], 2) if name in times else "not run" for name in ("ours", "rclone", NO_CHECK)]
    cells[2] += f"; ours {ratio[NO_CHECK]}"
    return [what, *cells, ratio["rclone"] if "rclone" in times else f"{ratio[NO_CHECK]} of --ignore-checksum's", goal]
