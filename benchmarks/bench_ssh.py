"""SSH sites against their floors and peers, on one real sshd on 127.0.0.1.

    python -m benchmarks ssh [--quick]
- a trivial cell on a warm session vs one command round trip on the same open connection;
- a 256 MB tensor in and out (`--in t --out t2`) vs `scp` of the same bytes up and back;
- 100,000 printed lines, complete and in order, vs `ssh host cat` of the same text.
Loopback hides latency, so the first ratio counts round trips rather than milliseconds.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import best_of, report, scratch_data_dir
from jupyter_split import aio
from jupyter_split.config import parse_config
from jupyter_split.core.outcome import CellOptions
from jupyter_split.core.split import Split

MB = 1 << 20


def _fail_on_error(event: dict) -> None:
    if event["type"] == "error":
        raise RuntimeError("\n".join(event["traceback"]))


def _ssh_args(server) -> list[str]:
    return ["-i", server.identity_file, "-o", f"UserKnownHostsFile={server.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]


def round_trip(split: Split) -> tuple[float, float]:
    ns: dict = {}
    split.execute("pass", CellOptions(site="sg"), ns, _fail_on_error)  # start the session
    ours = best_of(lambda: split.execute("pass", CellOptions(site="sg"), ns, _fail_on_error), repeat=30)
    ex = split.executor("sg")

    async def one_command() -> None:
        await ex.connection.run(["true"])  # the shared connection of the loop the cells use

    floor = best_of(lambda: aio.run(one_command()), repeat=30)
    return ours, floor


def tensor_in_out(split: Split, server, size: int) -> tuple[float, float]:
    import torch

    ns = {"t": torch.ones(size // 4, dtype=torch.float32)}

    def cell() -> None:
        out = split.execute("t2 = t", CellOptions(site="sg", inputs=["t"], outputs=["t2"]), ns, _fail_on_error)
        assert out.state == "succeeded" and ns["t2"].numel() == ns["t"].numel()
        del ns["t2"]

    ours = best_of(cell, repeat=3)
    with tempfile.TemporaryDirectory(prefix="jsb-scp-") as tmp:
        local, back = Path(tmp) / "blob", Path(tmp) / "back"
        local.write_bytes(os.urandom(size))
        remote = f"{server.user}@{server.host}:{server.workdir}/scp-blob"
        scp = ["scp", "-q", "-P", str(server.port), *_ssh_args(server)]

        def peer() -> None:
            subprocess.run([*scp, str(local), remote], check=True)
            subprocess.run([*scp, remote, str(back)], check=True)

        floor = best_of(peer, repeat=3)
        os.unlink(Path(server.workdir) / "scp-blob")
    return ours, floor


def many_lines(split: Split, server, lines: int) -> tuple[float, float, float]:
    """The ssh site, `ssh host cat` of the same text, and the same cell on the local executor."""
    cell = f"for i in range({lines}):\n    print('line', i, 'of the benchmark text, long enough to be a log line')"
    text = "".join(f"line {i} of the benchmark text, long enough to be a log line\n" for i in range(lines))

    def cell_on(site: str) -> None:
        received: list[str] = []
        split.execute(cell, CellOptions(site=site), {},
                      lambda e: received.append(e["text"]) if e["type"] == "stream" else _fail_on_error(e))
        assert "".join(received) == text, "lines lost, doubled or reordered"

    ours = best_of(lambda: cell_on("sg"), repeat=3)
    local = best_of(lambda: cell_on("home"), repeat=3)
    path = Path(server.workdir) / "lines.txt"
    path.write_text(text)
    ssh = ["ssh", "-p", str(server.port), *_ssh_args(server), f"{server.user}@{server.host}", "cat", str(path)]

    def peer() -> None:
        done = subprocess.run(ssh, check=True, capture_output=True)
        assert done.stdout.decode() == text

    floor = best_of(peer, repeat=3)
    path.unlink()
    return ours, floor, local


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.services.sshd import start_sshd

    quick = "--quick" in argv
    size, lines = (32 * MB, 10_000) if quick else (256 * MB, 100_000)
    with scratch_data_dir() as data:
        server = start_sshd(Path(data) / "sshd")
        try:
            config = parse_config({"experiment": {"name": "bench", "home": "home", "default_remote": "sg"},
                                   "sites": {"sg": server.site(), "home": {"jurisdiction": "CN"}}}, "bench")
            split = Split(config)
            started = time.perf_counter()
            aio.run(split.executor("sg").ready())
            print(f"bootstrap of the site venv: {time.perf_counter() - started:.1f} s", file=sys.stderr)
            rt = round_trip(split)
            tensor = tensor_in_out(split, server, size)
            text = many_lines(split, server, lines)
            rows = [
                ("trivial cell on a warm session vs one command round trip (s)", *rt, "<= 3x"),
                (f"{size // MB} MB tensor in and out vs scp up and back (s)", *tensor, "<= 1.25x (>= 0.8x throughput)"),
                (f"{lines:,} printed lines vs ssh cat (s)", *text[:2], "<= 2x (>= 0.5x throughput)"),
                (f"{lines:,} printed lines, ssh site vs the local executor (s)", text[0], text[2], "the transport's share"),
            ]
            print(report(rows))
            aio.run(split.executor("sg").close())
        finally:
            for site in ("sg", "home"):
                handle = split.index.session(site) if "split" in locals() else None
                if handle:
                    try:
                        os.killpg(handle["pid"], 9)
                    except ProcessLookupError:
                        pass
            server.stop()
    return 0
