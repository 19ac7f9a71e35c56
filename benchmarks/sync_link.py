"""`python -m benchmarks sync --link PROFILE`: copies through the link model, side by side with rclone and rsync.

Every row crosses the same link (`tests/services/link.py`, PROFILE scaled by --scale to what
this machine carries) to the same test sshd, in rounds that alternate the tools, each into
an empty destination:
- the checkpoint (N MB in 20 shards), local disk to SFTP and SFTP to local disk: jupyter_split
  against `rclone copy --transfers 8 --multi-thread-streams 8` (Debian's package, its hash
  check on) and `rsync -a` over one ssh connection;
- the checkpoint from S3 (moto_server behind a PROFILE link of its own) to the SFTP server,
  against rclone between the same two remotes (leave it out with --no-s3);
- a tree of small files, local disk to SFTP, against rclone;
- with --flaky K, the checkpoint pushed through PROFILE-flaky's stalls and cuts (K times as
  often and as short): goodput over the whole copy, unattended.
Rates are MB/s (1e6 bytes) over each tool's whole run, process start included for the peers;
a row gives the median and, in brackets, the lowest and highest round. Ours is also given as a
share of the cap while it was sending (from the first byte handed out to the last file
verified: no connecting, planning or publishing).
"""
from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from benchmarks.common import scratch_data_dir
from jupyter_split import sync
from tests.services.link import start_link
from tests.services.sshd import start_sshd, stop_sshd

MB = 1 << 20


def _spread(values: list[float], digits: int = 1, unit: str = "") -> str:
    return f"{statistics.median(values):.{digits}f}{unit} ({min(values):.{digits}f} to {max(values):.{digits}f})"


def rclone_config(path: Path, server, port: int, known_hosts: str) -> Path:
    """An rclone config with one `sftp` remote, `link`, to the sshd through the link (keys checked)."""
    path.write_text("[link]\ntype = sftp\nhost = 127.0.0.1\n"
                    f"port = {port}\nuser = {server.user}\nkey_file = {server.identity_file}\n"
                    f"known_hosts_file = {known_hosts}\n")
    return path


def rclone(config: Path, src: str, dest: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(["rclone", "copy", src, dest, "--config", str(config), "--transfers", "8",
                           "--multi-thread-streams", "8"], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"rclone copy {src} {dest} failed ({done.returncode}): {done.stderr[-2000:]}")


def rsync_ssh(server, port: int, known_hosts: str) -> str:
    return shlex.join(["ssh", "-p", str(port), "-i", server.identity_file, "-o", f"UserKnownHostsFile={known_hosts}",
                       "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])


def rounds(tools: dict[str, Callable[[], None]], fresh: dict[str, Path], count: int) -> dict[str, list[float]]:
    """Seconds of each tool's run, `count` rounds, alternating, each into an emptied destination."""
    times: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(count):
        for name, run in tools.items():
            shutil.rmtree(fresh[name], ignore_errors=True)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            print(f"  {name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    return times


def linked_rows(profile: str, scale: float, total_mb: int, small_files: int, count: int, flaky: float | None,
                shards_count: int = 20, rsync: bool = True, checkpoint: bool = True, s3_rows: bool = True,
                opaque: bool = False) -> int:
    """Print the link's rows: the checkpoint both ways (without `checkpoint`, not) and the small tree
    (none with `small_files` 0), each against its peers (rsync left out without `rsync`); the
    checkpoint's shards safetensors, or with `opaque` bytes the scanner reads whole (`write_shards`)."""
    from benchmarks.bench_sync import sha_tree, write_shards, write_small_tree

    if shutil.which("rclone") is None:
        print("rclone is not installed, and the link's rows compare with it: run `bash .ci/setup bench` "
              "(as root, or `apt-get install rclone`)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="jsb-link-") as tmp, scratch_data_dir():
        root = Path(tmp)
        server = start_sshd(root / "sshd")
        link = start_link(server.port, profile=profile, scale=scale)
        cap = link.profile.rate_up / 1e6
        kind = "opaque shards" if opaque else "safetensors shards"
        lines = [f"\n{profile} x {scale}: {link.profile.describe()}; checkpoint {total_mb} MiB in {shards_count} {kind}, "
                 f"{small_files} small files; {count} rounds\n",
                 "| measure | jupyter_split | rclone | rsync -a | vs rclone | vs rsync | share of the cap |",
                 "|---|---|---|---|---|---|---|"]
        try:
            shards, small, there = root / "shards", root / "small", root / "there"
            write_shards(shards, total_mb, shards_count, opaque)
            write_small_tree(small, small_files)
            sync.copy(str(shards), str(there), progress=False)  # published on the server's disk for the pulls
            known = root / "known_hosts_link"
            known.write_text(f"[127.0.0.1]:{link.port} {server.host_public_key}\n")
            sftp = {"username": server.user, "client_keys": [server.identity_file], "known_hosts": str(known)}
            conf = rclone_config(root / "rclone.conf", server, link.port, str(known))
            ssh = rsync_ssh(server, link.port, str(known))
            url = lambda path: f"ssh://127.0.0.1:{link.port}{path}"  # noqa: E731
            far = f"{server.user}@127.0.0.1:"
            mb = total_mb * MB / 1e6
            count_checkpoint = count if checkpoint else 0
            up = {"ours": root / "up-ours", "rclone": root / "up-rclone", "rsync": root / "up-rsync"}
            sending: list[float] = []
            times = rounds({
                "ours": lambda: sending.append(sync.copy(str(shards), url(up["ours"]), dest_options=sftp,
                                                         progress=False).send_seconds),
                "rclone": lambda: rclone(conf, str(shards), f"link:{up['rclone']}"),
                **({"rsync": lambda: subprocess.run(["rsync", "-a", "-e", ssh, f"{shards}/", f"{far}{up['rsync']}/"],
                                                    check=True)} if rsync else {}),
            }, up, count_checkpoint)
            assert all(sha_tree(up[name]) == sha_tree(shards) for name in times if checkpoint)
            checkpoint and lines.append(_row("checkpoint, local disk to SFTP, MB/s", mb, times, cap, sending))
            down = {"ours": root / "down-ours", "rclone": root / "down-rclone", "rsync": root / "down-rsync"}
            sending = []
            times = rounds({
                "ours": lambda: sending.append(sync.copy(url(there), str(down["ours"]), sftp, require_published=True,
                                                         progress=False).send_seconds),
                "rclone": lambda: rclone(conf, f"link:{there}", str(down["rclone"])),
                **({"rsync": lambda: subprocess.run(["rsync", "-a", "-e", ssh, f"{far}{there}/", f"{down['rsync']}/"],
                                                    check=True)} if rsync else {}),
            }, down, count_checkpoint)
            assert all(sha_tree(down[name]) == sha_tree(shards) for name in times if checkpoint)
            checkpoint and lines.append(_row("checkpoint, SFTP to local disk, MB/s", mb, times, cap, sending))
            if s3_rows:
                lines.append(s3_to_sftp_row(root, server, shards, conf, url, sftp, profile, scale, mb, count))
            if small_files:
                lines.append(_small_row(root, small, small_files, conf, url, sftp, count))
        finally:
            link.stop()
        if flaky:
            lines.append(flaky_row(root, server, shards, f"{profile}-flaky", scale, total_mb, count, flaky))
        stop_sshd(server)
    print("\n".join(lines))
    return 0


def _small_row(root: Path, small: Path, small_files: int, conf: Path, url, sftp: dict, count: int) -> str:
    from benchmarks.bench_sync import sha_tree

    tree = {"ours": root / "small-ours", "rclone": root / "small-rclone"}
    times = rounds({
        "ours": lambda: sync.copy(str(small), url(tree["ours"]), dest_options=sftp, progress=False),
        "rclone": lambda: rclone(conf, str(small), f"link:{tree['rclone']}"),
    }, tree, count)
    assert sha_tree(tree["ours"]) == sha_tree(tree["rclone"]) == sha_tree(small)
    ours, peer = times["ours"], times["rclone"]
    return (f"| {small_files} small files, local disk to SFTP, s | {_spread(ours, 2)} | {_spread(peer, 2)} | "
            f"| {_spread([o / p for o, p in zip(ours, peer)], 2)} of its time | | |")


def _row(what: str, mb: float, times: dict[str, list[float]], cap: float, sending: list[float]) -> str:
    """A row of rates over each tool's whole run; the share of the cap also while ours was sending
    (`sending`: the seconds of each of its rounds from the first byte handed out to the last file verified)."""
    rate = {name: [mb / t for t in ts] for name, ts in times.items()}
    ours = rate["ours"]
    ratios = [_spread([o / p for o, p in zip(ours, rate[name])], 2, "x") if name in rate else "" for name in ("rclone", "rsync")]
    peers = [_spread(rate[name]) if name in rate else "" for name in ("rclone", "rsync")]
    return (f"| {what} | {_spread(ours)} | {peers[0]} | {peers[1]} | {ratios[0]} | "
            f"{ratios[1]} | {_spread([o / cap for o in ours], 2)} of {cap:g}; while sending "
            f"{_spread([mb / t / cap for t in sending], 2)} |")


def s3_to_sftp_row(root: Path, server, shards: Path, conf: Path, url, sftp: dict, profile: str, scale: float,
                   mb: float, count: int) -> str:
    """The checkpoint from S3 (moto_server behind a `profile` link of its own) to the SFTP server
    (behind the first link): ours against rclone between the same two remotes."""
    from benchmarks.bench_sync import sha_tree
    from tests.services.s3 import start_s3

    s3 = start_s3(root / "s3", "s3")
    link = start_link(int(s3.endpoint_url.rsplit(":", 1)[1]), profile=profile, scale=scale)
    try:
        s3.make_bucket("abroad")
        sync.copy(str(shards), "s3://abroad/ck", dest_options=s3.storage_options, progress=False)
        endpoint = f"http://127.0.0.1:{link.port}"
        options = {**s3.storage_options, "client_kwargs": {"endpoint_url": endpoint}}
        # rclone's S3 remote from its environment: the keys in no file and on no command line
        # (the AWS_ variables of this shell are not its: a CA bundle there breaks rclone's plain HTTP)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "RCLONE_CONFIG_ABROAD_TYPE": "s3", "RCLONE_CONFIG_ABROAD_PROVIDER": "Other",
               "RCLONE_CONFIG_ABROAD_ENDPOINT": endpoint, "RCLONE_CONFIG_ABROAD_ACCESS_KEY_ID": s3.key,
               "RCLONE_CONFIG_ABROAD_SECRET_ACCESS_KEY": s3.secret}
        there = {"ours": root / "s3-ours", "rclone": root / "s3-rclone"}
        sending: list[float] = []
        before: list[float] = []  # connecting, planning, the guard's scan (reading S3 through its link), publishing

        def ours() -> None:
            report = sync.copy("s3://abroad/ck", url(there["ours"]), options, sftp, progress=False)
            sending.append(report.send_seconds)
            before.append(report.seconds - report.send_seconds)
        times = rounds({
            "ours": ours,
            "rclone": lambda: rclone(conf, "abroad:abroad/ck", f"link:{there['rclone']}", env),
        }, there, count)
        assert sha_tree(there["ours"]) == sha_tree(there["rclone"]) == sha_tree(shards)
    finally:
        link.stop()
        s3.stop()
    cap = link.profile.rate_up / 1e6
    return (_row(f"checkpoint, S3 to SFTP (each behind its own {profile} link), MB/s", mb, times, cap, sending)
            + f"\n\n(ours apart from its sending, {_spread(before, 1)} s: connecting, planning, publishing and the "
            f"guard's scan, which reads each object through the S3 link before the first byte leaves, safetensors "
            f"shards' headers only)")


def flaky_row(root: Path, server, shards: Path, profile: str, scale: float, total_mb: int, count: int,
              faster: float) -> str:
    """The checkpoint pushed through `profile` (its stalls and cuts on their seeded schedule, `faster`
    times as often and as short, so a copy this size meets them), each round on a fresh link,
    unattended: goodput over the whole copy, and what the link did meanwhile."""
    from benchmarks.bench_sync import sha_tree
    from tests.services.link import PROFILES

    base = PROFILES[profile]
    when = {"stall_every": base.stall_every / faster, "stall_for": base.stall_for / faster,
            "cut_every": base.cut_every / faster}
    goodput, events = [], []
    for i in range(count):
        link = start_link(server.port, profile=profile, scale=scale, seed=i, **when)
        try:
            known = root / "known_hosts_flaky"
            known.write_text(f"[127.0.0.1]:{link.port} {server.host_public_key}\n")
            sftp = {"username": server.user, "client_keys": [server.identity_file], "known_hosts": str(known)}
            dest = root / f"flaky-{i}"
            start = time.perf_counter()
            sync.copy(str(shards), f"ssh://127.0.0.1:{link.port}{dest}", dest_options=sftp, progress=False, retries=8)
            seconds = time.perf_counter() - start
            hit = [e for e in link.schedule(time.monotonic() - link.started) if e.at >= start - link.started]
            assert sha_tree(dest) == sha_tree(shards)
            goodput.append(total_mb * MB / 1e6 / seconds)
            events.append(f"{sum(e.kind == 'stall' for e in hit)} stalls, {sum(e.kind == 'cut' for e in hit)} cuts")
        finally:
            link.stop()
        shutil.rmtree(dest, ignore_errors=True)
    cap = link.profile.rate_up / 1e6
    return (f"| checkpoint through {profile} x {scale} (its schedule {faster:g}x as often), local disk to SFTP, "
            f"goodput MB/s (unattended; "
            f"{'; '.join(events)}) | {_spread(goodput)} | | | | | {_spread([g / cap for g in goodput], 2)} of {cap:g} |")
