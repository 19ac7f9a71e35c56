"""The sidebar's polls: GET /jupyter-split/runs and /sites at 100, 1,000 and 5,000 runs in the index.

    python -m benchmarks sidebar [--rounds R] [--calls K] [--sizes 100,1000,5000] [--peer-rev REV]

The sidebar polls every 2 s. Measured through real jupyter_servers (the extension loaded, a kept-alive
HTTP connection each): the time per request and the bytes on the wire per poll (status line, headers
and body) of
- an unchanged poll that sends back the ETag it got (`If-None-Match`): 304, no body;
- a poll without it (what the sidebar sent before it kept ETags);
- a changed poll: a row of the index changed by another connection (as a kernel following its run
  writes it), then one poll with the old ETag; it must show the change (a 200 with the new row).
The peer is the same endpoint of the code before the ETags (`--peer-rev`, its `jupyter_split/` taken
out of git into a scratch folder and put first on the server's PYTHONPATH): without and with
`If-None-Match` (tornado's own ETag of the body: a 304 too, but only once the whole body was built).
Goal: the unchanged poll under 5 ms and 1 KB at 5,000 runs; a change shows at the next poll.
"""
from __future__ import annotations

import argparse
import http.client
import io
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.bench_runs_index import TOKEN, Server
from benchmarks.common import markdown_table
from jupyter_split.runs.index import RunIndex

#: the commit before the sidebar's ETags: the peer's code
PEER_REV = "3001ba3"
SITES = ("home", "abroad")


def fill(path: Path, count: int, rng: random.Random) -> None:
    """An index of `count` ended runs over the last 30 days (the newest page holds no active run)."""
    RunIndex(path)
    now = time.time()
    rows = []
    for i in range(count):
        created = now - (count - i) * 30 * 86400 / count
        site = SITES[i % 2]
        run_id = f"demo-{site}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(created))}-{rng.getrandbits(24):06x}"
        rows.append((run_id, site, ("succeeded", "failed", "cancelled")[i % 3], f"/srv/experiment/runs/{run_id}", "detached",
                     created, created + 60, i % 97, f"epoch {i % 50}: loss {1 / (i + 1):.4f}", run_id[::-1]))
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO runs (run_id, site, state, run_dir, mode, created, updated, last_seq, last_line, rev_id) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all in the main file: the peer gets a copy of it alone
    db.close()


def peer_code(rev: str, into: Path) -> Path:
    """`jupyter_split/` as it was at `rev`, unpacked under `into`; returns the folder to put on PYTHONPATH."""
    tar = subprocess.run(["git", "archive", rev, "jupyter_split"], check=True, capture_output=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into


def start(data: Path, home: Path, code: Path | None = None) -> Server:
    """A jupyter_server with the jupyter_split extension over `data`; `code` first on its path if given."""
    old = os.environ.get("PYTHONPATH")
    if code is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [old])])
    try:
        return Server(data, home)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def get(server: Server, path: str, etag: str | None = None) -> tuple[int, str, int, bytes]:
    """(status, ETag, bytes on the wire, body) of one GET over the server's kept-alive connection."""
    if server.conn is None:
        server.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"Authorization": f"token {TOKEN}", **({"If-None-Match": etag} if etag else {})}
    server.conn.request("GET", path, headers=headers)
    response = server.conn.getresponse()
    body = response.read()
    if response.status not in (200, 304):
        raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    wire = len(f"HTTP/1.1 {response.status} {response.reason}\r\n\r\n") + len(body) + sum(
        len(k) + len(v) + 4 for k, v in response.getheaders())
    return response.status, response.getheader("Etag") or "", wire, body


def timed(server: Server, path: str, calls: int, etag: str | None) -> tuple[float, int, int]:
    """Median seconds of `calls` GETs, with the status and wire bytes of the last."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        status, _, wire, _ = get(server, path, etag)
        times.append(time.perf_counter() - start)
    return statistics.median(times), status, wire


def unchanged_polls(polls: dict[str, tuple[Server, str]], path: str, rounds: int, calls: int,
                    rows: dict[str, list[str]]) -> None:
    """Time unchanged polls (each server's ETag sent back: a 304) of `path` on every server of `polls`
    (name -> (server, etag)), `rounds` of `calls` each in turn so a burst of load hits all alike; add each
    one's median and wire bytes to `rows[name]`, and the first's time over the second's to `rows["ratio"]`."""
    times: dict[str, list[float]] = {name: [] for name in polls}
    wires: dict[str, int] = {}
    for _ in range(rounds):
        for name, (server, etag) in polls.items():
            seconds, status, wires[name] = timed(server, path, calls, etag)
            assert status == 304, (name, status)
            times[name].append(seconds)
    first, second = list(polls)[:2]
    ratios = sorted(o / p for o, p in zip(times[first], times[second]))
    for name in polls:
        rows.setdefault(name, []).append(f"{statistics.median(times[name]) * 1000:.1f} ms, {wires[name]:,} B")
    rows.setdefault("ratio", []).append(f"{statistics.median(ratios):.2f}x [{ratios[0]:.2f} to {ratios[-1]:.2f}]")


def change_shows(server: Server, index_path: Path, calls: int) -> tuple[float, int, bool]:
    """Change the newest run's last line from another connection, then poll once with the old ETag:
    the median ms and wire bytes of that poll over `calls` changes, and whether each showed its change."""
    times, wires, shown = [], [], True
    db = sqlite3.connect(index_path)
    (run_id,) = db.execute("SELECT run_id FROM runs ORDER BY created DESC LIMIT 1").fetchone()
    for i in range(calls):
        _, etag, _, _ = get(server, "/jupyter-split/runs")
        line = f"changed {i} {time.time()}"
        with db:
            db.execute("UPDATE runs SET last_line = ?, updated = ? WHERE run_id = ?", (line, time.time(), run_id))
        start = time.perf_counter()
        status, _, wire, body = get(server, "/jupyter-split/runs", etag)
        times.append(time.perf_counter() - start)
        wires.append(wire)
        shown = shown and status == 200 and line.encode() in body
    db.close()
    return statistics.median(times) * 1000, int(statistics.median(wires)), shown


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sidebar")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--peer-rev", default=PEER_REV, help="the commit whose endpoints are the peer")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(19)
    root = Path(tempfile.mkdtemp(prefix="jsb-sidebar-", dir="/tmp"))
    rows: dict[tuple[str, int], str] = {}
    load = os.getloadavg()[0]
    try:
        home = root / "home"
        home.mkdir()
        code = peer_code(args.peer_rev, root / "peer")
        for size in sizes:
            ours_data, peer_data = root / f"n{size}", root / f"p{size}"
            ours_data.mkdir(), peer_data.mkdir()
            fill(ours_data / "index.sqlite", size, rng)
            shutil.copy(ours_data / "index.sqlite", peer_data / "index.sqlite")
            ours, peer = start(ours_data, home), start(peer_data, home, code)
            try:
                ours.ready(), peer.ready()
                polls = []
                for route in ("runs", "sites"):
                    path = f"/jupyter-split/{route}"
                    etag, peer_etag = get(ours, path)[1], get(peer, path)[1]
                    polls += [(f"{route}: unchanged, If-None-Match", ours, path, etag),
                              (f"{route}: no If-None-Match (the sidebar before its ETags)", ours, path, None),
                              (f"{route}: peer, no If-None-Match", peer, path, None),
                              (f"{route}: peer, If-None-Match (tornado's ETag of the body)", peer, path, peer_etag)]
                # rounds, each every poll in turn: a burst of load on the shared machine hits them all alike
                rounds: dict[str, list[float]] = {name: [] for name, *_ in polls}
                for _ in range(args.rounds):
                    for name, server, path, tag in polls:
                        seconds, status, wire = timed(server, path, args.calls, tag)
                        rounds[name].append(seconds)
                        rows[name, size] = f"{{ms:.2f}} ms, {wire:,} B ({status})"
                for name in rounds:
                    rows[name, size] = rows[name, size].format(ms=statistics.median(rounds[name]) * 1000)
                ms, wire, shown = change_shows(ours, ours_data / "index.sqlite", args.calls)
                rows["runs: changed, the next poll", size] = f"{ms:.2f} ms, {wire:,} B, " + (
                    "shown" if shown else "NOT SHOWN")
            finally:
                ours.stop(), peer.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"# sidebar: {args.rounds} rounds x {args.calls} GETs over a kept-alive connection, median of the round medians; bytes on the wire per poll "
          f"(status); peer: the code at {args.peer_rev}; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print(markdown_table(["poll", *(f"{s:,} runs" for s in sizes)],
                         [[name, *(rows.get((name, s), "") for s in sizes)] for name in dict.fromkeys(n for n, _ in rows)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
