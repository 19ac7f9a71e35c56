"""The run index when runs last for weeks: the listing and the lookups the faces make, at 100 to 100,000 runs.

    python -m benchmarks runs_index [--quick] [--rounds R] [--calls K] [--sizes 100,1000,10000,100000]

No other tool keeps this index, so each measure's peer is the same measure on an index of 1,000 runs:
the ratio is the time at N runs over the time at 1,000 (goal: at most 1.5x at 100,000). Measured:
`Split.list_runs(limit=20)`; `RunIndex.get` by a run id's random tail (6 hex digits) and by its start
(all but that tail); the listing filtered by a state, a site and a state, and a notebook last used a
month ago (the sidebar's filters); GET /jupyter-split/runs (the sidebar's call, limit 50) through a real jupyter_server,
one per index, over a kept-alive HTTP connection; and, for information, `RunIndex.get` by a part in the
middle of an id (its `yyyymmdd-hhmmss`: the substring scan, which grows with the index) and the first open of each index file
(written in the layout of the version before the indexes: the upgrade a user's file goes through).

Each round times K calls of every measure at every size, in turn, and keeps their median; a row gives
the median over the rounds and the spread (lowest to highest) of the per-round ratio.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from benchmarks.common import best_of
from jupyter_split.config import load_config
from jupyter_split.core.split import Split
from jupyter_split.runs.index import RunIndex, UnknownRun

EXPERIMENTS = ("demo", "sweep", "ablation")
SITES = ("home", "remote")
DAYS = 60
TOKEN = "bench-runs-index"
OLD_NOTEBOOK = "notebooks/last-month.ipynb"


def fill(path: Path, count: int, rng: random.Random) -> list[str]:
    """An index file of `count` runs over the last DAYS days, written as the previous version wrote it.
    The newest 1,000 have ended; among the older ones one in twenty still reads as running. Returns the ids."""
    now = time.time()
    rows, ids = [], []
    for i in range(count):
        created = now - (count - i - rng.random()) * DAYS * 86400 / count
        site = SITES[i % len(SITES)]
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(created))
        run_id = f"{EXPERIMENTS[i % len(EXPERIMENTS)]}-{site}-{stamp}-{rng.getrandbits(24):06x}"
        state = "running" if i < count - 1000 and i % 20 == 0 else ("succeeded", "failed", "cancelled")[i % 3]
        # a notebook of the first half of the days (one run in 50): its page is found at the index's far end
        notebook = OLD_NOTEBOOK if i < count // 2 and i % 50 == 0 else f"notebooks/sweep-{i % 40}.ipynb"
        rows.append((run_id, site, state, f"/srv/experiment/runs/{run_id}", "detached", created, created + 60, i % 97,
                     f"epoch {i % 50}: loss {1 / (i + 1):.4f}", json.dumps({"notebook": notebook})))
        ids.append(run_id)
    RunIndex(path)  # the current layout, taken back below
    db = sqlite3.connect(path)
    # back to the layout before the indexes (version 0): no index but the primary key's, no rev_id
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall():
        db.execute(f"DROP INDEX {name}")
    if "rev_id" in {c[1] for c in db.execute("PRAGMA table_info(runs)")}:
        db.execute("ALTER TABLE runs DROP COLUMN rev_id")
    db.execute("PRAGMA user_version = 0")
    db.executemany("INSERT INTO runs (run_id, site, state, run_dir, mode, created, updated, last_seq, last_line, handle) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return ids


def targets(ids: list[str]) -> dict[str, str]:
    """A run a quarter of the way back, found by its tail, by its start, and by a part in its middle; each
    chosen so that it matches that run only."""
    for run_id in ids[len(ids) * 3 // 4::-1]:
        tail, start, middle = run_id[-6:], run_id[:-7], run_id[-22:-7]
        if sum(tail in r for r in ids) == sum(r.startswith(start) for r in ids) == sum(middle in r for r in ids) == 1:
            return {"tail": tail, "start": start, "middle": middle}
    raise RuntimeError("no run with a unique tail, start and middle")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real jupyter_server with the jupyter_split extension, over its own data directory."""

    def __init__(self, data: Path, root: Path):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "JUPYTER_SPLIT_CONFIG"}
        env.update(JUPYTER_SPLIT_DATA=str(data), HOME=str(root))
        self.log = open(data / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
             f"--ServerApp.root_dir={root}", "--ServerApp.jpserver_extensions={'jupyter_split': True}"],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.conn: http.client.HTTPConnection | None = None

    def ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = Path(self.log.name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"jupyter_server ended ({self.proc.returncode}):\n{tail}")
            try:
                self.get("/jupyter-split/runs?limit=1")
                return
            except (OSError, http.client.HTTPException):
                self.conn = None
                time.sleep(0.3)
        raise RuntimeError("jupyter_server did not answer in time")

    def get(self, path: str) -> bytes:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.conn.request("GET", path, headers={"Authorization": f"token {TOKEN}"})
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return body

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks runs_index")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 5 calls, no server")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--no-server", action="store_true", help="leave GET /jupyter-split/runs out")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.no_server = 3, 5, True
    sizes = [int(s) for s in args.sizes.split(",")]
    base = 1000 if 1000 in sizes else sizes[0]

    rng = random.Random(17)
    root = Path(tempfile.mkdtemp(prefix="jsb-runs-", dir="/tmp"))
    measures: dict[int, dict[str, Callable[[], object]]] = {}
    opened: dict[int, float] = {}
    servers: list[Server] = []
    try:
        (root / "home").mkdir()
        os.environ["HOME"] = str(root / "home")  # no user config: the default sites
        os.environ.pop("JUPYTER_SPLIT_CONFIG", None)
        os.chdir(root / "home")
        config = load_config()
        for size in sizes:
            data = root / f"n{size}"
            data.mkdir()
            ids = fill(data / "index.sqlite", size, rng)
            start = time.perf_counter()
            index = RunIndex(data / "index.sqlite")
            opened[size] = time.perf_counter() - start
            split = Split(config, index)
            part = targets(ids)

            def lookup(index: RunIndex = index, text: str = "") -> None:
                index.get(text)

            measures[size] = {
                "list_runs(limit=20)": lambda split=split: split.list_runs(limit=20),
                # the sidebar's filters: runs still marked running are all older than the newest 1,000
                "RunIndex.list(state=running, limit=50)": lambda i=index: i.list(state="running"),
                "RunIndex.list(site, state=running, limit=50)": lambda i=index: i.list("home", state="running"),
                "RunIndex.list(notebook of last month, limit=50)": lambda i=index: i.list(notebook=OLD_NOTEBOOK),
                "RunIndex.get by the tail (6 hex)": lambda i=index, t=part["tail"]: lookup(i, t),
                "RunIndex.get by the start": lambda i=index, t=part["start"]: lookup(i, t),
                "RunIndex.get by a middle part (info: the scan)": lambda i=index, t=part["middle"]: lookup(i, t),
            }
            assert index.get(part["tail"]).run_id == index.get(part["start"]).run_id == index.get(part["middle"]).run_id
            try:
                index.get("no-such-run")
            except UnknownRun:
                pass
            if not args.no_server:
                server = Server(data, root / "home")
                servers.append(server)
                measures[size]["GET /jupyter-split/runs (limit 50)"] = lambda s=server: s.get("/jupyter-split/runs")
        for server in servers:
            server.ready()
        names = list(measures[sizes[0]])
        per_round: dict[tuple[str, int], list[float]] = {(n, s): [] for n in names for s in sizes}
        for _ in range(args.rounds):
            for name in names:
                for size in sizes:
                    per_round[name, size].append(best_of(measures[size][name], args.calls))
    finally:
        for server in servers:
            server.stop()
        os.chdir("/")
        import shutil
        shutil.rmtree(root, ignore_errors=True)

    print(f"# runs_index: {args.rounds} rounds x {args.calls} calls; ms, median over the rounds; "
          f"ratio to {base:,} runs, median [lowest to highest round]\n")
    print("| measure | " + " | ".join(f"{s:,} runs" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in names:
        cells = []
        for size in sizes:
            ms = statistics.median(per_round[name, size]) * 1000
            ratios = [t / b for t, b in zip(per_round[name, size], per_round[name, base])]
            cell = f"{ms:.3g} ms"
            if size != base:
                cell += f", {statistics.median(ratios):.2f}x [{min(ratios):.2f} to {max(ratios):.2f}]"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nfirst open of each index file (the upgrade from the previous layout, once): "
          + ", ".join(f"{s:,} runs {opened[s] * 1000:.0f} ms" for s in sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
