"""POST /jupyter-split/runs/RUN/interrupt through a real jupyter_server, against a real session runner on the
home site: the cell that runs ends `interrupted` with its KeyboardInterrupt, as a notebook's stop button ends
it, and the session lives on with its variables; a cell queued behind it, an ended run and an unknown one
are refused with what to do."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_split import core
from tests.sessions.cells import Cell

pytest_plugins = ["pytest_jupyter.jupyter_server"]


async def _interrupt(jp_fetch, run_id: str, body: bytes = b"") -> dict[str, Any]:
    response = await jp_fetch("jupyter-split", "runs", run_id, "interrupt", method="POST", body=body)
    return json.loads(response.body)


async def _refused(jp_fetch, run_id: str, body: bytes = b"") -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as err:
        await _interrupt(jp_fetch, run_id, body)
    return err.value.code, json.loads(err.value.response.body)["message"]


async def _state(jp_fetch, run_id: str) -> str:
    body = json.loads((await jp_fetch("jupyter-split", "runs", run_id, "events", params={"tail": "5"})).body)
    return body["run"]["state"]


async def _is(jp_fetch, run_id: str, state: str) -> bool:
    return await _state(jp_fetch, run_id) == state


async def _until(check, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def _run_of(text: str) -> str:
    """The run id of the newest run whose cell holds `text` (the cells run in threads of their own)."""
    for record in core.get_split().index.list(limit=10):
        request = Path(record.run_dir, "request.json")
        if request.is_file() and text in json.loads(request.read_text())["code"]:
            return record.run_id
    return ""


async def test_interrupt_ends_the_running_cell_and_the_session_lives_on(jp_fetch) -> None:
    assert (await asyncio.to_thread(Cell("x = 41").result)).state == "succeeded"
    busy = Cell("import time\nprint('working', flush=True)\ntime.sleep(300)")
    await _until(lambda: asyncio.to_thread(lambda: bool(_run_of("time.sleep(300)"))), "the long cell's run")
    busy_id = _run_of("time.sleep(300)")
    await _until(lambda: _is(jp_fetch, busy_id, "running"), "the long cell to run")
    queued = Cell("print(x + 1)")
    await _until(lambda: asyncio.to_thread(lambda: bool(_run_of("print(x + 1)"))), "the queued cell's run")
    queued_id = _run_of("print(x + 1)")
    await _until(lambda: _is(jp_fetch, queued_id, "queued"), "the second cell to queue on the session")

    # Queued behind another cell: the signal would reach that one, so it is refused, and says what to do.
    code, message = await _refused(jp_fetch, queued_id)
    assert code == 409 and "behind another cell" in message and f"%split cancel {queued_id}" in message

    assert await _interrupt(jp_fetch, busy_id, b"{}") == {"run_id": busy_id, "state": "running"}
    outcome = await asyncio.to_thread(busy.result)
    assert outcome.state == "interrupted"  # as the notebook's stop button ends a cell
    body = json.loads((await jp_fetch("jupyter-split", "runs", busy_id, "events")).body)
    assert body["run"]["state"] == "interrupted" and body["run"]["last_line"] == "working"
    assert any(e["type"] == "error" and e["ename"] == "KeyboardInterrupt" for e in body["events"])
    assert body["events"][-1]["type"] == "status" and body["events"][-1]["state"] == "interrupted"

    # The session lived on: the queued cell runs next, in the same namespace.
    assert (await asyncio.to_thread(queued.result)).state == "succeeded" and queued.text == "42\n"

    code, message = await _refused(jp_fetch, busy_id)
    assert code == 409 and message == f"run {busy_id} has ended (interrupted): there is no cell to interrupt"


async def test_unknown_run_and_bad_body(jp_fetch) -> None:
    code, message = await _refused(jp_fetch, "no-such-run")
    assert code == 404 and "%split runs" in message
    code, message = await _refused(jp_fetch, "no-such-run", b'{"now": true}')
    assert code == 400
