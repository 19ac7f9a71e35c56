"""The run index: looking a run up by a part of its id."""
from __future__ import annotations

import sqlite3

import pytest

from jupyter_split.runs.index import RunIndex, RunRecord, UnknownRun


def test_a_part_of_a_run_id_finds_it_and_wildcards_are_plain_characters(tmp_path):
    index = RunIndex(tmp_path / "index.sqlite")
    for run_id in ("exp_a-home-1-aaaa", "expXa-home-2-bbbb", "exp%b-sg-3-cccc"):
        index.add(RunRecord(run_id=run_id, site="home", run_dir=f"/runs/{run_id}", mode="detached"))
    assert index.get("aaaa").run_id == "exp_a-home-1-aaaa"
    assert index.get("exp_a").run_id == "exp_a-home-1-aaaa"  # `_` is not "any character": expXa does not match
    assert index.get("exp%b").run_id == "exp%b-sg-3-cccc"
    with pytest.raises(UnknownRun, match="matches 2 runs"):
        index.get("-home-")
    with pytest.raises(UnknownRun, match="no run 'EXP_A'"):
        index.get("EXP_A")


#: the layout of an index file written before the run index had its indexes (version 0)
OLD_LAYOUT = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, site TEXT NOT NULL, state TEXT NOT NULL, run_dir TEXT NOT NULL,
    mode TEXT NOT NULL, name TEXT, handle TEXT NOT NULL DEFAULT '{}', out_vars TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL, updated REAL NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
    last_line TEXT NOT NULL DEFAULT '', delivered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sessions (site TEXT PRIMARY KEY, handle TEXT NOT NULL, started REAL NOT NULL);
"""


def _old_index(path, run_ids):
    """An index file in the layout of version 0, of ended runs `<experiment>-<site>-...`, oldest first."""
    db = sqlite3.connect(path)
    db.executescript(OLD_LAYOUT)
    db.executemany("INSERT INTO runs (run_id, site, state, run_dir, mode, created, updated) VALUES (?, ?, 'succeeded', ?, 'detached', ?, ?)",
                   [(run_id, run_id.split("-")[1], f"/runs/{run_id}", 1000.0 + i, 1000.0 + i) for i, run_id in enumerate(run_ids)])
    db.commit()
    db.close()


def _plans(index, call):
    """What `call` asks the index file, each statement beside its query plan."""
    db = index._db()
    statements = []
    db.set_trace_callback(statements.append)
    try:
        call()
    finally:
        db.set_trace_callback(None)
    return {sql: " / ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql))
            for sql in statements if sql.lstrip().upper().startswith(("SELECT", "DELETE"))}


def test_an_index_file_of_an_older_version_gets_the_indexes_when_opened(tmp_path):
    path = tmp_path / "index.sqlite"
    _old_index(path, ["exp-home-20260101-000000-a1b2c3", "exp-home-20260101-000001-d4e5f6"])
    index = RunIndex(path)
    db = sqlite3.connect(path)
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'")}
    assert {"runs_by_created", "runs_by_site", "runs_by_state", "runs_by_rev_id", "runs_by_state_created",
            "runs_by_site_state", "runs_by_notebook"} <= names
    assert db.execute("SELECT count(*) FROM runs WHERE rev_id IS NULL").fetchone()[0] == 0
    assert index.get("a1b2c3").run_id == "exp-home-20260101-000000-a1b2c3"
    assert [r.run_id for r in index.list()] == ["exp-home-20260101-000001-d4e5f6", "exp-home-20260101-000000-a1b2c3"]
    RunIndex(path)  # opening it again changes nothing
    assert index.get("exp-home-20260101-000001").run_id == "exp-home-20260101-000001-d4e5f6"


def test_a_handle_that_is_not_json_has_no_notebook_and_breaks_nothing(tmp_path):
    path = tmp_path / "index.sqlite"
    _old_index(path, ["exp-home-20260101-000000-a1b2c3"])
    db = sqlite3.connect(path)  # a row edited by hand, in the file a version before the notebook's index
    db.execute("UPDATE runs SET handle = 'not json'")
    db.commit()
    index = RunIndex(path)
    index.add(RunRecord(run_id="exp-home-20260101-000001-d4e5f6", site="home", run_dir="/r/2", mode="detached",
                        handle={"notebook": "a.ipynb"}))
    assert [r.run_id for r in index.list(notebook="a.ipynb")] == ["exp-home-20260101-000001-d4e5f6"]
    assert len(index.list()) == 2


def test_a_row_an_older_version_writes_later_is_still_found_by_its_tail(tmp_path):
    path = tmp_path / "index.sqlite"
    index = RunIndex(path)
    index.add(RunRecord(run_id="exp-home-20260101-000000-a1b2c3", site="home", run_dir="/r/1", mode="detached"))
    db = sqlite3.connect(path)  # as an older version writes: no rev_id
    db.execute("INSERT INTO runs (run_id, site, state, run_dir, mode, created, updated) "
               "VALUES ('exp-home-20260101-000001-d4e5f6', 'home', 'running', '/r/2', 'detached', 1, 1)")
    db.commit()
    assert index.get("d4e5f6").run_id == "exp-home-20260101-000001-d4e5f6"
    assert index.get("e5f6").run_id == "exp-home-20260101-000001-d4e5f6"


def _many(index, count=300):
    for i in range(count):
        index.add(RunRecord(run_id=f"exp{i % 3}-{('home', 'sg')[i % 2]}-20260101-{i:06d}-{i * 7919 % 65536:04x}ff",
                            site=("home", "sg")[i % 2], run_dir=f"/r/{i}", mode="detached",
                            handle={"notebook": f"notebooks/{'ab'[i % 2]}.ipynb"} if i % 5 == 0 else {},
                            state=("succeeded", "running", "failed")[i % 3], created=1000.0 + i, updated=1000.0 + i))


def test_the_listing_and_the_lookups_by_a_start_or_a_tail_use_an_index(tmp_path):
    index = RunIndex(tmp_path / "index.sqlite")
    _many(index)
    target = index.list(limit=300)[150].run_id
    for call in (lambda: index.list(limit=20), lambda: index.list("sg", limit=20),
                 lambda: index.list(state="failed", limit=20), lambda: index.list("sg", state="running", limit=20),
                 lambda: index.list(notebook="notebooks/a.ipynb", limit=20),
                 # a page further back: the same walk of the same index, from the last row's `created` on
                 lambda: index.list(limit=20, before=1150.0), lambda: index.list("sg", limit=20, before=1150.0),
                 lambda: index.list(state="failed", limit=20, before=1150.0),
                 lambda: index.list("sg", state="running", limit=20, before=1150.0),
                 lambda: index.list(notebook="notebooks/a.ipynb", limit=20, before=1150.0),
                 lambda: index.get(target[:-4]), lambda: index.get(target[-6:]), lambda: index.get(target),
                 lambda: index.prune(1100.0), lambda: index.prune(1200.0, site="home")):
        plans = _plans(index, call)
        assert plans
        for sql, plan in plans.items():
            assert "INDEX" in plan, (sql, plan)  # a search of an index, or a walk of one in order
            assert not plan.startswith("SCAN") or plan == "SCAN runs USING INDEX runs_by_created", (sql, plan)
            if "LIMIT 20" in sql:  # the newest first, read off the index: no sorting of every row
                assert "TEMP B-TREE" not in plan, (sql, plan)
    # page by page, from each page's last `created`, every run comes once, in order (what the prunes left)
    pages, before = [], None
    while page := index.list("sg", limit=20, before=before):
        pages.append([r.created for r in page])
        before = page[-1].created
    assert len(pages) > 2 and sum(pages, []) == [r.created for r in index.list("sg", limit=1000)]


def test_a_start_or_a_tail_wins_over_a_part_inside_and_the_messages_stay(tmp_path):
    index = RunIndex(tmp_path / "index.sqlite")
    for run_id in ("abc-home-1-ffff", "xabcx-home-2-eeee", "zz-home-3-abc1", "q-sg-4-home"):
        index.add(RunRecord(run_id=run_id, site="home", run_dir=f"/runs/{run_id}", mode="detached"))
    assert index.get("abc-").run_id == "abc-home-1-ffff"  # also inside xabcx-...: the start wins
    assert index.get("-ffff").run_id == "abc-home-1-ffff"
    assert index.get("-home").run_id == "q-sg-4-home"  # its tail; inside three others
    assert index.get("abc").run_id == "abc-home-1-ffff"  # inside two others
    with pytest.raises(UnknownRun, match=r"'bc' matches 3 runs \(zz-home-3-abc1, xabcx-home-2-eeee, abc-home-1-ffff\.\.\.\)"):
        index.get("bc")  # the start or the end of none: every id that holds it counts
    index.add(RunRecord(run_id="ffff-sg-5-a", site="sg", run_dir="/runs/5", mode="detached"))
    with pytest.raises(UnknownRun, match="'ffff' matches 2 runs"):  # the end of one, the start of another
        index.get("ffff")
    with pytest.raises(UnknownRun, match="no run 'nope' in the run index"):
        index.get("nope")
    with pytest.raises(UnknownRun, match="matches 5 runs"):
        index.get("")


def test_the_listing_filters_by_state_text_and_notebook_across_the_whole_index(tmp_path):
    index = RunIndex(tmp_path / "index.sqlite")
    for i in range(300):  # the runs a filter finds are old: far below the newest page
        index.add(RunRecord(run_id=f"exp-home-20261201-0000{i:02d}-{i:06x}", site=("home", "abroad")[i % 2],
                            run_dir=f"/r/{i}", mode="detached", state=("succeeded", "failed")[i % 3 == 0],
                            name="Pretrain_50%" if i == 7 else None, created=float(i),
                            handle={"notebook": "work/train.ipynb"} if i < 4 else {}))
    failed = index.list(limit=500, state="failed")
    assert len(failed) == 100 and all(r.state == "failed" for r in failed)
    assert [r.run_id for r in index.list(text="PRETRAIN_50%")] == ["exp-home-20261201-000007-000007"]
    assert [r.name for r in index.list(text="_50%")] == ["Pretrain_50%"]  # `_` and `%` are characters
    assert [r.run_id[-6:] for r in index.list(text="00012b")] == ["00012b"]  # a part of an id
    assert [r.created for r in index.list(notebook="work/train.ipynb")] == [3.0, 2.0, 1.0, 0.0]
    assert [r.created for r in index.list("abroad", 2, state="failed", notebook="work/train.ipynb")] == [3.0]
    assert index.list(notebook="other.ipynb") == []


def _open_and_list(path, barrier, results):
    barrier.wait()
    try:
        RunIndex(path).list(limit=1)
        results.put("ok")
    except Exception as error:  # noqa: BLE001 - the test reports whatever a process met
        results.put(repr(error))


def test_processes_that_open_a_new_index_at_once_all_get_it(tmp_path):
    """The first opening turns the file to WAL, which takes a lock sqlite does not wait for: eight processes
    meeting a new file at the same moment must all get the index (a CLI, the server and a kernel at once)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    outcomes = []
    for attempt in range(30):
        path = tmp_path / f"index-{attempt}.sqlite"
        barrier, results = context.Barrier(8), context.Queue()
        workers = [context.Process(target=_open_and_list, args=(path, barrier, results)) for _ in range(8)]
        for worker in workers:
            worker.start()
        outcomes += [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join()
    assert outcomes == ["ok"] * 240
