"""A cell sent with its request (`execute {run_dir, request, follow}` on a session's socket), against a real
session runner: the session writes the request itself, runs the cell once however often it is asked (a
client that lost the reply asks again and gets the same records), and writes nowhere but its runs folder."""
from __future__ import annotations

import json
import os
import posixpath
import socket
from pathlib import Path
from typing import Any

from jupyter_split import core
from jupyter_split.runs.ids import new_run_id
from tests.sessions.cells import Cell


def _ask(sock: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    """Send one request on a channel of its own; every line the session answers, to the final record."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(120)
        s.connect(sock)
        s.sendall(json.dumps(message).encode() + b"\n")
        lines = []
        with s.makefile("rb") as answer:
            for line in answer:
                lines.append(json.loads(line))
                if lines[-1].get("final") or not lines[0].get("ok"):
                    break
        return lines


def _request(run_id: str, code: str) -> dict[str, Any]:
    return {"run_id": run_id, "code": code, "out": [], "timeout": None, "name": None, "has_in": False,
            "site": "home", "wandb": False, "view": None, "labels": {}, "env": {}}


def _printed(lines: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in lines if e.get("type") == "stream")


def test_a_cell_sent_with_its_request_runs_once_however_often_it_is_asked(split_home: Path) -> None:
    assert Cell("count = 0").result().state == "succeeded"  # the session, warm
    split = core.get_split()
    handle = split.index.session("home")
    ex = split.executor("home")
    run_id = new_run_id("t", "home")
    run_dir = ex.path("runs", run_id)
    ask = {"op": "execute", "run_dir": run_dir, "request": _request(run_id, "count += 1\nprint(count)"), "follow": True}

    first = _ask(handle["sock"], ask)
    assert first[0] == {"ok": True, "seq": first[0]["seq"]} and first[-1]["state"] == "succeeded"
    assert _printed(first) == "1\n"
    assert json.loads((Path(run_dir) / "request.json").read_text())["code"] == "count += 1\nprint(count)"
    again = _ask(handle["sock"], ask)  # the reply was lost: asked again, the records again, the cell not run again
    assert again[0]["ok"] and again[1:] == first[1:]
    after = Cell("print(count)")
    assert after.result().state == "succeeded" and after.text == "1\n"


def test_a_request_for_a_folder_outside_the_sessions_runs_is_refused_and_writes_nothing(split_home: Path, tmp_path) -> None:
    assert Cell("pass").result().state == "succeeded"
    split = core.get_split()
    sock = split.index.session("home")["sock"]
    runs = split.executor("home").path("runs")
    for run_dir in (str(tmp_path / "elsewhere"), posixpath.join(runs, "..", "sessions", "x"), runs + "/a/b",
                    runs, runs + "/.", posixpath.join(runs, "x") + "/"):
        answer = _ask(sock, {"op": "execute", "run_dir": run_dir, "request": _request("r", "print(1)"), "follow": True})
        assert answer == [{"ok": False, "error": f"execute: run_dir {run_dir!r} is not a run folder of this "
                                                 f"session's {os.path.normpath(runs)}"}], answer
    answer = _ask(sock, {"op": "execute", "run_dir": posixpath.join(runs, "x1"), "request": "print(1)"})
    assert not answer[0]["ok"] and not os.path.exists(posixpath.join(runs, "x1"))
    assert not (tmp_path / "elsewhere").exists()
