"""Sync: jupyter_split.sync against `rsync -a` over the same sshd and `fsspec.generic.rsync`.

    python -m benchmarks sync [--total-mb N] [--small-files N]
    python -m benchmarks sync --link border [--scale 0.25] [--total-mb 64]

Same data side by side: a checkpoint of 20 random shards (N MB in all; the issue's
2 GB is scaled to what the machine holds) and a tree of small files. Measures:
a fresh copy over SFTP vs rsync over ssh; between backends (S3 and local disk,
local disk and SFTP both ways, S3 to SFTP over two capped links) vs fsspec's generic
rsync; bytes sent for a re-sync with one shard changed; and a no-op re-sync of the
small tree vs rsync's. Servers: a real sshd and a moto_server on 127.0.0.1.

`--link PROFILE` measures only the rows through the link model's PROFILE (scaled by --scale to
what this machine carries), against rclone and `rsync -a`: see `benchmarks/sync_link.py`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import fsspec
from fsspec.generic import rsync as fsspec_rsync

from benchmarks.common import scratch_data_dir
from benchmarks.sync_link import linked_rows
from jupyter_split import sync
from jupyter_split.sync.fsutil import SFTP_CIPHERS
from tests.services.link import start_link
from tests.services.s3 import start_s3
from tests.services.sshd import start_sshd, stop_sshd

MB = 1 << 20
LINK_MB_PER_S = 50.0  # about 400 Mbit/s, a good leased line between two countries
LINK_RTT_MS = (0.0, 60.0)  # none, and a round trip between two countries


def write_shards(root: Path, total_mb: int, shards: int = 20, opaque: bool = False) -> None:
    """`shards` files of `total_mb` MiB of random bytes in all.

    As a checkpoint is written (`jupyter_split.ckpt`, Hugging Face's `save_pretrained`): safetensors
    shards of F32 tensors (4 MiB each; the residency guard's scan reads their headers, and skips the
    float payloads by the headers' offsets). `opaque`: files of bytes in no format the scanner
    knows (`.bin`), whose every byte the guard's content scan reads before a copy abroad.
    """
    rng = random.Random(1)
    root.mkdir(parents=True)
    size = total_mb * MB // shards
    size -= 0 if opaque else size % 4  # (whole F32 values)
    for i in range(shards):
        name = f"model-{i:05d}-of-{shards:05d}" + (".bin" if opaque else ".safetensors")
        with open(root / name, "wb") as f:
            if not opaque:
                f.write(safetensors_header(i, size))
            left = size
            while left:  # in pieces: one random int of a 2 GB shard's bits is more than Python makes
                piece = min(left, 64 * MB)
                f.write(rng.randbytes(piece))
                left -= piece


def safetensors_header(shard: int, size: int, tensor_bytes: int = 4 * MB) -> bytes:
    """The 8-byte length and JSON header of a safetensors file whose F32 tensors fill `size` bytes."""
    tensors, offset = {}, 0
    while offset < size:
        end = min(size, offset + tensor_bytes)
        tensors[f"layers.{shard}.w{len(tensors)}"] = {"dtype": "F32", "shape": [(end - offset) // 4],
                                                       "data_offsets": [offset, end]}
        offset = end
    header = json.dumps({"__metadata__": {"format": "pt"}, **tensors}).encode()
    header += b" " * (-len(header) % 8)  # (the format pads it to 8 bytes)
    return len(header).to_bytes(8, "little") + header


def write_small_tree(root: Path, count: int) -> None:
    rng = random.Random(2)
    for i in range(count):
        path = root / f"d{i // 100:03d}" / f"f{i:05d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(200, 2000)))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(ours, peer, fresh: tuple[Path, Path], repeat: int = 3) -> tuple[float, float]:
    """Best time of each over `repeat` alternating runs, each into an empty destination.

    The machine is shared: alternating spreads the noise over both sides.
    """
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, fn in enumerate((ours, peer)):
            shutil.rmtree(fresh[i], ignore_errors=True)
            best[i] = min(best[i], timed(fn))
    return best[0], best[1]


def rsync(server, src: Path, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    ssh = shlex.join(["ssh", "-p", str(server.port), "-i", server.identity_file, "-o", f"UserKnownHostsFile={server.known_hosts}",
                      "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
    return subprocess.run(["rsync", "-a", *extra, "-e", ssh, f"{src}/", f"{server.user}@127.0.0.1:{dest}/"],
                          check=True, capture_output=True, text=True)


def sha_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sync")
    parser.add_argument("--total-mb", type=int, default=400, help="checkpoint size (the issue's figure is 2048)")
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--link", metavar="PROFILE", help="only the rows through this link profile (e.g. border)")
    parser.add_argument("--scale", type=float, default=0.25, help="with --link: rates and window times this")
    parser.add_argument("--rounds", type=int, default=3, help="with --link: rounds of each row")
    parser.add_argument("--flaky", type=float, metavar="K", help="with --link: also through PROFILE-flaky, "
                        "its stalls and cuts K times as often and as short")
    parser.add_argument("--shards", type=int, default=20, help="with --link: the checkpoint's files (1: one big file)")
    parser.add_argument("--no-rsync", action="store_true", help="with --link: leave rsync -a out (one flow: slow)")
    parser.add_argument("--no-checkpoint", action="store_true", help="with --link: leave the checkpoint's rows "
                        "between local disk and SFTP out")
    parser.add_argument("--no-s3", action="store_true", help="with --link: leave the S3 to SFTP row out")
    parser.add_argument("--opaque", action="store_true", help="with --link: the checkpoint's shards as bytes in no "
                        "format the scanner knows (its every byte scanned), not safetensors")
    parser.add_argument("--rclone", action="store_true", help="only the loopback rows against rclone (issue 20): "
                        "see benchmarks/sync_rclone.py")
    args = parser.parse_args(argv)
    if args.rclone:
        from benchmarks.sync_rclone import rclone_rows
        return rclone_rows(args.total_mb, args.small_files, args.rounds)
    if args.link:
        return linked_rows(args.link, args.scale, args.total_mb, args.small_files, args.rounds, args.flaky,
                           args.shards, not args.no_rsync, not args.no_checkpoint, not args.no_s3, args.opaque)
    with tempfile.TemporaryDirectory(prefix="jsb-sync-", dir="/tmp") as tmp, scratch_data_dir():
        root = Path(tmp)
        server = start_sshd(root / "sshd")
        s3 = start_s3(root, "s3")
        try:
            rows = run_all(root, server, s3, args.total_mb, args.small_files)
        finally:
            s3.stop()
            stop_sshd(server)
    print(f"\ncheckpoint: {args.total_mb} MB in 20 shards; small tree: {args.small_files} files\n")
    print("| measure | jupyter_split | peer | ratio | goal |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


def run_all(root: Path, server, s3, total_mb: int, small_files: int) -> list[tuple[str, ...]]:
    shards, small = root / "shards", root / "small"
    write_shards(shards, total_mb)
    write_small_tree(small, small_files)
    sftp = {"username": server.user, "client_keys": [server.identity_file], "known_hosts": server.known_hosts}
    url = lambda path: f"ssh://127.0.0.1:{server.port}{path}"  # noqa: E731
    rows = []

    # 1. a fresh copy over the test sshd
    ours, peer = alternate(
        lambda: sync.copy(str(shards), url(root / "dest-ours"), dest_options=sftp, progress=False),
        lambda: rsync(server, shards, root / "dest-rsync"),
        fresh=(root / "dest-ours", root / "dest-rsync"))
    assert sha_tree(root / "dest-ours") == sha_tree(shards)
    rows.append(("fresh copy over sshd, MB/s (vs rsync -a)", f"{total_mb / ours:.0f}", f"{total_mb / peer:.0f}",
                 f"{peer / ours:.2f}x", ">= 0.9x"))

    # 2. between two different backends: S3 (moto) to a local disk. (fsspec's generic rsync
    # cannot be the peer for S3 to SFTP: it hands sshfs "ssh:///path" URLs, which land in a
    # folder named "ssh:" under the remote home.)
    s3.make_bucket("bench")
    sync.copy(str(shards), "s3://bench/ck", dest_options=s3.storage_options, progress=False)
    ours, peer = alternate(
        lambda: sync.copy("s3://bench/ck", str(root / "s3-ours"), s3.storage_options, progress=False),
        lambda: generic_rsync("s3://bench/ck", str(root / "s3-fsspec"), s3),
        fresh=(root / "s3-ours", root / "s3-fsspec"))
    ours_tree, peer_tree = sha_tree(root / "s3-ours"), sha_tree(root / "s3-fsspec")
    assert ours_tree == sha_tree(shards) and peer_tree == ours_tree
    rows.append(("S3 to local disk, MB/s (vs fsspec.generic.rsync)", f"{total_mb / ours:.0f}", f"{total_mb / peer:.0f}",
                 f"{peer / ours:.2f}x", ">= 2x"))

    # 2b. the other way: local disk to S3 (fsspec stages each file in a temp folder first)
    ours, peer = alternate(
        lambda: sync.copy(str(shards), f"s3://bench/up-ours-{time.monotonic_ns()}", dest_options=s3.storage_options,
                          progress=False),
        lambda: generic_rsync(str(shards), f"s3://bench/up-fsspec-{time.monotonic_ns()}", s3),
        fresh=(root / "unused-a", root / "unused-b"))
    rows.append(("local disk to S3, MB/s (vs fsspec.generic.rsync)", f"{total_mb / ours:.0f}", f"{total_mb / peer:.0f}",
                 f"{peer / ours:.2f}x", ">= 2x"))

    # 2c. local disk and SFTP, both ways, both trees (fsspec's generic rsync on sshfs, the same ciphers)
    peer_fs = peer_generic_fs(server, server.port, server.known_hosts)
    for name, tree, unit in (("checkpoint", shards, "MB/s"), (f"{small_files} small files", small, "s")):
        for direction in ("local disk to SFTP", "SFTP to local disk"):
            up = direction.startswith("local")
            src_ours, src_peer = (str(tree), f"file://{tree}") if up else (url(root / "o-up"), f"ssh://127.0.0.1:{server.port}{root / 'p-up'}")
            dest = ("o-up", "p-up") if up else ("o-down", "p-down")
            dest_ours = url(root / dest[0]) if up else str(root / dest[0])
            dest_peer = f"ssh://127.0.0.1:{server.port}{root / dest[1]}" if up else f"file://{root / dest[1]}"
            ours, peer = alternate(
                lambda: sync.copy(src_ours, dest_ours, None if up else sftp, sftp if up else None, progress=False),
                lambda: fsspec_rsync(src_peer, dest_peer, fs=peer_fs, on_error="raise"),
                fresh=(root / dest[0], root / dest[1]), repeat=2 if tree is shards else 1)
            assert sha_tree(root / dest[0]) == sha_tree(root / dest[1]) == sha_tree(tree)
            rows.append((f"{name}, {direction}, {unit} (vs fsspec.generic.rsync)",
                         *((f"{total_mb / ours:.0f}", f"{total_mb / peer:.0f}") if unit == "MB/s" else (f"{ours:.2f}", f"{peer:.2f}")),
                         f"{peer / ours:.2f}x", ">= 2x"))
        for dest in ("o-up", "p-up", "o-down", "p-down"):
            shutil.rmtree(root / dest)

    # 2d. between the two sites' backends, each behind its own capped link: S3 abroad to SFTP at home
    link = f"each behind a {LINK_MB_PER_S:.0f} MB/s link with %.0f ms RTT"
    for rtt_ms in LINK_RTT_MS:
        ours, peer = s3_to_sftp_over_links(root, server, s3, "s3://bench/ck", LINK_MB_PER_S, rtt_ms, 2, sha_tree(shards))
        rows.append((f"S3 to SFTP, {link % rtt_ms}, MB/s (vs fsspec.generic.rsync)", f"{total_mb / ours:.0f}",
                     f"{total_mb / peer:.0f}", f"{peer / ours:.2f}x", ">= 2x"))

    # 2e. the small tree between the same two backends (one run each: the peer takes minutes)
    sync.copy(str(small), "s3://bench/small", dest_options=s3.storage_options, progress=False)
    for rtt_ms in LINK_RTT_MS:
        ours, peer = s3_to_sftp_over_links(root, server, s3, "s3://bench/small", LINK_MB_PER_S, rtt_ms, 1, sha_tree(small))
        rows.append((f"{small_files} small files S3 to SFTP, {link % rtt_ms}, s (vs fsspec.generic.rsync)", f"{ours:.2f}",
                     f"{peer:.2f}", f"{peer / ours:.2f}x", ">= 2x"))

    # 3. one shard changed (same size): bytes sent
    shard = sorted(shards.iterdir())[7]
    shard.write_bytes(random.Random(3).randbytes(shard.stat().st_size))
    report = sync.copy(str(shards), url(root / "dest-ours"), dest_options=sftp, progress=False)
    stats = rsync(server, shards, root / "dest-rsync", "--stats")
    peer_sent = next(int(line.split(":")[1].split()[0].replace(",", "")) for line in stats.stdout.splitlines()
                     if line.startswith("Total bytes sent"))
    size = shard.stat().st_size
    rows.append(("one shard changed: bytes sent / shard size", f"{report.bytes_sent / size:.3f}", f"{peer_sent / size:.3f}",
                 f"{report.bytes_sent / size:.2f}x of the shard", "<= 1.1x"))

    # 4. the small tree over sshd: a fresh copy (best of 3 alternating), then a no-op re-sync.
    # Both tools write into a RAM-backed folder where there is one: creating files on this
    # machine's disk swings between 0.07 and 0.7 ms a file from minute to minute, which
    # drowned the tools' own difference.
    published = root / "small-published"
    sync.copy(str(small), str(published), progress=False)
    with tempfile.TemporaryDirectory(prefix="jsb-", dir="/dev/shm" if Path("/dev/shm").is_dir() else root) as fast:
        mine, theirs = Path(fast) / "small-ours", Path(fast) / "small-rsync"
        ours, peer = alternate(lambda: sync.copy(str(published), url(mine), dest_options=sftp, progress=False),
                               lambda: rsync(server, published, theirs), fresh=(mine, theirs))
        assert sha_tree(mine) == sha_tree(small)
        rows.append((f"fresh copy of {small_files} small files over sshd, files/s (vs rsync -a)",
                     f"{small_files / ours:.0f}", f"{small_files / peer:.0f}", f"{peer / ours:.2f}x", ">= 0.9x"))
        ours = min(timed(lambda: sync.copy(str(published), url(mine), dest_options=sftp, progress=False))
                   for _ in range(3))
        peer = min(timed(lambda: rsync(server, published, theirs)) for _ in range(3))
        rows.append((f"no-op re-sync of {small_files} small files, s (vs rsync -a)", f"{ours:.2f}", f"{peer:.2f}",
                     f"{ours / peer:.2f}x", "<= 1x"))
    return rows


def s3_to_sftp_over_links(root: Path, server, s3, source: str, rate: float, rtt_ms: float, repeat: int,
                          expected: dict[str, str]) -> tuple[float, float]:
    """S3 (moto) to SFTP (sshd), each server behind its own relay capped at `rate` MB/s.

    fsspec's generic rsync gets each file whole to a local temp file, then puts it; the
    engine streams it through. With the links as the limit that is the difference between
    the two legs' times added and the slower leg alone.
    """
    s3_link = start_link(int(s3.endpoint_url.rsplit(":", 1)[1]), rate, rtt_ms)
    ssh_link = start_link(server.port, rate, rtt_ms)
    try:
        known = root / "known_hosts_links"
        known.write_text(f"[127.0.0.1]:{ssh_link.port} {server.host_public_key}\n")
        sftp = {"username": server.user, "client_keys": [server.identity_file], "known_hosts": str(known)}
        s3_options = {**s3.storage_options, "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{s3_link.port}"}}
        peer_fs = peer_generic_fs(server, ssh_link.port, str(known), s3_options)
        ours_url = f"ssh://127.0.0.1:{ssh_link.port}{root / 'linked-ours'}"
        ours, peer = alternate(
            lambda: sync.copy(source, ours_url, s3_options, sftp, progress=False),
            lambda: fsspec_rsync(source, f"ssh://127.0.0.1:{ssh_link.port}{root / 'linked-fsspec'}", fs=peer_fs,
                                 on_error="raise"),
            fresh=(root / "linked-ours", root / "linked-fsspec"), repeat=repeat)
        assert sha_tree(root / "linked-ours") == expected and sha_tree(root / "linked-fsspec") == expected
    finally:
        s3_link.stop()
        ssh_link.stop()
    return ours, peer


def peer_generic_fs(server, port: int, known_hosts: str, s3_options: dict | None = None):
    """fsspec's generic filesystem over the local disk, sshfs at `port` and S3.

    sshfs is handed the host-less `ssh:///path` URLs fsspec's generic filesystem makes
    (its files would land under a folder named `ssh:`): `PeerSSH` only strips them;
    what it copies, and how, is fsspec's. It gets the engine's ciphers.
    """
    from fsspec.generic import GenericFileSystem, _generic_fs
    from sshfs import SSHFileSystem

    class PeerSSH(SSHFileSystem):
        async def _put_file(self, lpath, rpath, **kwargs):
            return await super()._put_file(lpath, self._strip_protocol(rpath), **kwargs)

        async def _get_file(self, rpath, lpath, **kwargs):
            return await super()._get_file(self._strip_protocol(rpath), lpath, **kwargs)

        async def _makedirs(self, path, **kwargs):
            return await super()._makedirs(self._strip_protocol(path), **kwargs)

    _generic_fs["file"] = fsspec.filesystem("file")
    _generic_fs["ssh"] = PeerSSH(host="127.0.0.1", port=port, encryption_algs=SFTP_CIPHERS, username=server.user,
                                 client_keys=[server.identity_file], known_hosts=known_hosts, skip_instance_cache=True)
    if s3_options is not None:
        _generic_fs["s3"] = fsspec.filesystem("s3", **s3_options, skip_instance_cache=True)
    return GenericFileSystem(default_method="generic")


def generic_rsync(src: str, dest: str, s3) -> None:
    from fsspec.generic import GenericFileSystem

    fs = GenericFileSystem(default_method="options", storage_options={"s3": s3.storage_options})
    fsspec_rsync(src, dest, fs=fs, on_error="raise")
