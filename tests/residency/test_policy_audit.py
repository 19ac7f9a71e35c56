"""The audit log: append-only, one whole line per record, under concurrency and crashes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jupyter_split.residency.audit import append_record, read_records

WRITER = """
import sys
from pathlib import Path
from jupyter_split.residency.audit import append_record
path, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
pad = "x" * 3000  # records longer than a pipe buffer: interleaving would show
i = 0
while count < 0 or i < count:
    append_record(path, {"tag": tag, "i": i, "pad": pad})
    i += 1
    if i == 1 and count < 0:
        print("writing", flush=True)
"""


def writer(path: Path, tag: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(count)], stdout=subprocess.PIPE, text=True)


def test_concurrent_writers_never_interleave_or_lose_a_record(tmp_path):
    log = tmp_path / "audit.jsonl"
    procs = [writer(log, f"w{n}", 150) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]  # every line parses whole
    assert len(records) == 600
    for n in range(4):
        assert [r["i"] for r in records if r["tag"] == f"w{n}"] == list(range(150))  # in order, none lost
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_a_writer_killed_mid_stream_leaves_only_whole_lines(tmp_path):
    log = tmp_path / "audit.jsonl"
    for round_ in range(3):
        proc = writer(log, f"k{round_}", -1)
        assert proc.stdout.readline() == "writing\n"
        time.sleep(0.05 * (round_ + 1))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # a kill can tear the last line (Linux stops a write between two pages on SIGKILL): readers skip
    # it, and the next writer cuts it off, as each round's writer did for the round before
    assert {r["tag"] for r in read_records(log)} == {"k0", "k1", "k2"}
    append_record(log, {"tag": "next"})
    data = log.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.splitlines()]  # every line whole
    assert {r["tag"] for r in records} == {"k0", "k1", "k2", "next"} and records[-1]["tag"] == "next"


def test_a_torn_tail_is_skipped_then_cut_off_and_never_glued_to_the_next_record(tmp_path):
    log = tmp_path / "audit.jsonl"
    append_record(log, {"n": 1})
    with open(log, "ab") as handle:
        handle.write(b'{"n": 2, "decision": "refu')  # what a kill or a power cut mid-write can leave
    assert [r["n"] for r in read_records(log)] == [1]
    append_record(log, {"n": 3})
    assert [r["n"] for r in read_records(log)] == [1, 3]
    assert log.read_bytes() == b'{"n":1}\n{"n":3}\n'


def test_a_last_record_that_lacks_only_its_newline_is_kept(tmp_path):
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b'{"n":1}\n{"n":2}')
    append_record(log, {"n": 3})
    assert log.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":3}\n'


def test_reading_a_missing_log_is_empty(tmp_path):
    assert list(read_records(tmp_path / "none.jsonl")) == []
