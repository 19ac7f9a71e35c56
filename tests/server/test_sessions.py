"""GET /jupyter-split/sessions and POST .../sessions/SITE/stop|restart through a real jupyter_server, against
real session runners on the local sites: the states, a queued cell from a second client, stop and restart,
the ETag, and the 400s."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_split.core.sessions import SESSION_STATES
from tests.sessions.cells import Cell
from tests.fixtures.server import fetch_json

pytest_plugins = ["pytest_jupyter.jupyter_server"]


async def _post(jp_fetch, site: str, action: str, body: bytes = b"{}") -> dict[str, Any]:
    return await fetch_json(jp_fetch, "sessions", site, action, method="POST", body=body)


async def _session(jp_fetch, site: str = "home") -> dict[str, Any]:
    body = await fetch_json(jp_fetch, "sessions", params={"site": site})
    assert [s["site"] for s in body["sites"]] == [site]
    return body["sites"][0]


async def _until(jp_fetch, check, what: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await _session(jp_fetch)
        if check(row):
            return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {row}")


async def test_gone_warm_busy_with_a_queue_then_stopped_and_restarted(jp_fetch, monkeypatch) -> None:
    body = await fetch_json(jp_fetch, "sessions")
    assert body["states"] == list(SESSION_STATES)
    assert {s["site"]: s["state"] for s in body["sites"]} == {"home": "gone", "abroad": "gone"}

    assert (await asyncio.to_thread(Cell("kept = 'before'").result)).state == "succeeded"
    warm = await _session(jp_fetch)
    assert warm["state"] == "warm" and warm["pid"] and warm["memory"] > 1 << 20 and warm["started"] <= time.time()
    assert warm["running"] is None and warm["queue"] == []

    busy = Cell("import time\nprint('going', flush=True)\ntime.sleep(300)")
    row = await _until(jp_fetch, lambda r: r["state"] == "busy", "the session to be busy")
    monkeypatch.setenv("JPY_SESSION_NAME", "work/second.ipynb")  # as jupyter_server names a notebook's kernel
    waiting = Cell("print(kept)")  # another notebook's cell: it waits behind the busy one
    row = await _until(jp_fetch, lambda r: r["queue"], "the second cell to queue")
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert row["state"] == "busy" and row["running"]["cell"] == "import time"
    assert [q["cell"] for q in row["queue"]] == ["print(kept)"] and row["queue"][0]["state"] == "queued"
    # each cell says the notebook it came from (none for one from elsewhere)
    assert row["queue"][0]["notebook"] == "work/second.ipynb" and row["running"]["notebook"] is None
    running_id, queued_id = row["running"]["run_id"], row["queue"][0]["run_id"]

    stopped = await _post(jp_fetch, "home", "stop")
    assert stopped["stopped"] is True
    assert stopped["cancelled"] == [{"run_id": running_id, "state": "cancelled"},
                                    {"run_id": queued_id, "state": "cancelled"}]
    assert (await asyncio.to_thread(busy.result)).state == (await asyncio.to_thread(waiting.result)).state == "cancelled"  # cancelled, not failed
    runs = {r["run_id"]: r["state"] for r in (await fetch_json(jp_fetch, "runs"))["runs"]}
    assert runs[running_id] == runs[queued_id] == "cancelled"
    assert (await _session(jp_fetch))["state"] == "gone"
    assert (await _post(jp_fetch, "home", "stop"))["stopped"] is False  # nothing to stop: said, not an error

    restarted = await _post(jp_fetch, "home", "restart")
    assert restarted["session"]["state"] == "warm" and restarted["session"]["pid"] != warm["pid"]
    after = Cell("print('fresh', 'kept' in dir())")
    assert (await asyncio.to_thread(after.result)).state == "succeeded" and after.text == "fresh False\n"  # a fresh namespace
    assert (await _session(jp_fetch))["pid"] == restarted["session"]["pid"]
    await _post(jp_fetch, "home", "stop")


async def test_an_unchanged_poll_is_a_304(jp_fetch) -> None:
    first = await jp_fetch("jupyter-split", "sessions", raise_error=False)
    assert first.code == 200 and first.headers["Cache-Control"] == "no-cache"
    again = await jp_fetch("jupyter-split", "sessions", headers={"If-None-Match": first.headers["Etag"]},
                           raise_error=False)
    assert again.code == 304 and again.body == b""


@pytest.mark.parametrize(("site", "says"), [("nowhere", "unknown site 'nowhere'"), ("x" * 300, "at most 200"),
                                            ("a\tb", "control character")])
async def test_an_unknown_or_bad_site_is_a_400_that_says_why(jp_fetch, site: str, says: str) -> None:
    for action in ("stop", "restart"):
        with pytest.raises(HTTPClientError) as err:
            await _post(jp_fetch, site, action)
        assert err.value.code == 400 and says in err.value.response.body.decode(), err.value.response.body
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", "sessions", params={"site": "nowhere"})
    assert err.value.code == 400 and "Known sites: abroad, home" in err.value.response.body.decode()


async def test_a_body_with_fields_is_a_400(jp_fetch) -> None:
    with pytest.raises(HTTPClientError) as err:
        await _post(jp_fetch, "home", "stop", body=b'{"force": true}')
    assert err.value.code == 400 and "`force` is not a field" in err.value.response.body.decode()
