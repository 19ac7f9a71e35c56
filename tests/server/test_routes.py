"""The sidebar's REST handlers against a real jupyter_server, real runners and real checkpoints."""
from __future__ import annotations

import asyncio
import inspect
import json
import time
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from tornado.httpclient import HTTPClientError

from jupyter_split import core
from jupyter_split.core.outcome import CellOptions
from jupyter_split.protocol import RUN_STATES, TERMINAL_STATES
from jupyter_split.server.routes import HANDLERS
from jupyter_split.server.sessions import SITE
from jupyter_split.server.transfers import TRANSFER_ID
from jupyter_split.sync import copy
from tests.fixtures.core import write_config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

METHODS = ("get", "post", "put", "patch", "delete", "head")
#: a real-looking run id for routes with a run id in them
SAMPLE_RUN = "split-demo-home-20260101-000000-abcdef"


def _route_url(pattern: str) -> str:
    return (pattern.replace("(?P<run_id>[A-Za-z0-9._-]+)", SAMPLE_RUN).replace(SITE, "home")
            .replace(TRANSFER_ID, "0123456789abcdef"))


def _methods(handler: type) -> list[str]:
    return [m for m in METHODS if m in vars(handler)]


async def _json(jp_fetch, *parts: str, **kwargs: Any) -> dict[str, Any]:
    response = await jp_fetch("jupyter-split", *parts, **kwargs)
    return json.loads(response.body)


def _start(code: str, site: str = "home") -> str:
    outcome = core.get_split().execute(code, CellOptions(site=site, detach=True), None, lambda event: None)
    return outcome.run_id


async def _until(predicate, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_every_handler_method_is_authenticated() -> None:
    # tornado's `authenticated` wraps every method in one and the same code object.
    wrapper = tornado.web.authenticated(lambda self: None).__code__
    assert HANDLERS, "no routes registered"
    for pattern, handler in HANDLERS:
        methods = _methods(handler)
        assert methods, f"{handler.__name__} ({pattern}) serves no method"
        for name in methods:
            method = getattr(handler, name)
            assert method.__code__ is wrapper, f"{handler.__name__}.{name} ({pattern}) is not @tornado.web.authenticated"
            assert inspect.iscoroutinefunction(method.__wrapped__), f"{handler.__name__}.{name} should be async"


class TestWithoutToken:
    """With jupyter_server's own default check switched off, only our decorators stand guard."""

    @pytest.fixture
    def jp_server_config(self, split_home: Path) -> dict[str, Any]:
        return {"ServerApp": {"jpserver_extensions": {"jupyter_split": True}, "allow_unauthenticated_access": True}}

    @pytest.mark.parametrize("auth", ["none", "wrong token"])
    async def test_every_route_refuses(self, jp_fetch, auth: str) -> None:
        # A matching XSRF cookie and header, so a POST is refused for want of a user, not of XSRF.
        headers = {"Cookie": "_xsrf=deadbeef", "X-XSRFToken": "deadbeef"}
        headers["Authorization"] = "" if auth == "none" else "token not-the-token"
        for pattern, handler in HANDLERS:
            for method in _methods(handler):
                body = b"{}" if method in ("post", "put", "patch") else None
                with pytest.raises(HTTPClientError) as err:
                    await jp_fetch("jupyter-split", *_route_url(pattern).split("/"), method=method.upper(),
                                   body=body, headers=dict(headers))
                assert err.value.code == 403, f"{method.upper()} {pattern} answered {err.value.code} without a token"


async def test_states_are_the_one_list_with_a_style_each(jp_fetch) -> None:
    served = (await _json(jp_fetch, "states"))["states"]
    assert [s["name"] for s in served] == [s.name for s in RUN_STATES]
    assert {s["name"] for s in served if s["terminal"]} == TERMINAL_STATES
    assert {"succeeded", "failed", "cancelled", "timeout", "interrupted"} == TERMINAL_STATES
    styles = {s["name"]: s["style"] for s in served}
    assert styles["interrupted"] == "warn" and styles["running"] == "active" and styles["succeeded"] == "ok"
    assert all(s["meaning"] for s in served)


async def test_sites_lists_both_default_sites(jp_fetch) -> None:
    body = await _json(jp_fetch, "sites")
    assert body["experiment"] == {"name": "split-demo", "home": "home", "default_remote": "abroad"}
    sites = {s["name"]: s for s in body["sites"]}
    assert set(sites) == {"abroad", "home"}
    assert (sites["abroad"]["jurisdiction"], sites["home"]["jurisdiction"]) == ("SG", "CN")
    assert sites["home"]["home"] is True and sites["abroad"]["home"] is False
    assert all(s["reachable"] and s["executor"] == "local" and s["latency_ms"] >= 0 for s in sites.values())


async def test_a_run_appears_streams_and_finishes(jp_fetch) -> None:
    run_id = await asyncio.to_thread(_start, "print('hello from home')\n21 * 2")

    async def listed():
        runs = (await _json(jp_fetch, "runs"))["runs"]
        return next((r for r in runs if r["run_id"] == run_id), None)

    row = await listed()
    assert row and row["site"] == "home" and "handle" not in row

    async def finished():
        body = await _json(jp_fetch, "runs", run_id, "events", params={"after": 0})
        return body if any(e["type"] == "status" and e["state"] == "succeeded" for e in body["events"]) else None

    body = await _until(finished, "the run to succeed")
    kinds = [e["type"] for e in body["events"]]
    assert "stream" in kinds and "result" in kinds
    text = "".join(e["text"] for e in body["events"] if e["type"] == "stream")
    assert "hello from home" in text
    result = next(e for e in body["events"] if e["type"] == "result")
    assert result["data"]["text/plain"] == "42"

    # Asking from a sequence number gives only what came after it: nothing lost or doubled.
    seqs = [e["seq"] for e in body["events"]]
    later = await _json(jp_fetch, "runs", run_id, "events", params={"after": seqs[1]})
    assert [e["seq"] for e in later["events"]] == seqs[2:]


async def test_events_carry_the_runs_state_and_last_line_from_its_whole_log(jp_fetch) -> None:
    run_id = await asyncio.to_thread(_start, "print('before the interrupt', flush=True)\nraise KeyboardInterrupt")

    async def ended():
        body = await _json(jp_fetch, "runs", run_id, "events", params={"after": 0})
        return body if body["run"]["state"] in TERMINAL_STATES else None

    # Nothing lists the runs meanwhile: the run's index row still says running; its log does not.
    body = await _until(ended, "the run to end")
    assert core.get_split().index.get(run_id).state == "running"
    run = body["run"]
    assert run["state"] == "interrupted" and run["last_line"] == "before the interrupt"
    assert run["last_seq"] == body["events"][-1]["seq"]
    assert body["events"][-1]["type"] == "status" and body["events"][-1]["state"] == "interrupted"

    # Asked from its last seq, the run is still there with its state, and no record comes twice.
    later = await _json(jp_fetch, "runs", run_id, "events", params={"after": run["last_seq"]})
    assert later["events"] == [] and later["run"]["state"] == "interrupted"
    assert later["run"]["last_line"] == "before the interrupt"

    # The runs list says the same, from the same fold of the log, and the index keeps it.
    [row] = [r for r in (await _json(jp_fetch, "runs"))["runs"] if r["run_id"] == run_id]
    assert (row["state"], row["last_line"], row["last_seq"]) == ("interrupted", "before the interrupt", run["last_seq"])
    assert core.get_split().index.get(run_id).state == "interrupted"


async def test_cancel_a_long_run(jp_fetch) -> None:
    run_id = await asyncio.to_thread(_start, "import time\nprint('started', flush=True)\ntime.sleep(600)")

    async def started():
        events = (await _json(jp_fetch, "runs", run_id, "events"))["events"]
        return any(e["type"] == "stream" and "started" in e["text"] for e in events)

    await _until(started, "the long run to start")
    body = await _json(jp_fetch, "runs", run_id, "cancel", method="POST", body=b"")
    assert body == {"run_id": run_id, "state": "cancelled"}
    runs = {r["run_id"]: r for r in (await _json(jp_fetch, "runs"))["runs"]}
    assert runs[run_id]["state"] == "cancelled"
    events = (await _json(jp_fetch, "runs", run_id, "events"))["events"]
    assert events[-1]["type"] == "status" and events[-1]["state"] == "cancelled"


async def test_unknown_run_is_404_with_a_hint(jp_fetch) -> None:
    for parts, method in ((("events",), "GET"), (("cancel",), "POST")):
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("jupyter-split", "runs", "no-such-run", *parts, method=method, body=b"" if method == "POST" else None)
        assert err.value.code == 404
        assert "%split runs" in json.loads(err.value.response.body)["message"]


async def test_bad_query_argument_is_400(jp_fetch) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", "runs", params={"limit": "many"})
    assert err.value.code == 400
    assert "limit='many'" in json.loads(err.value.response.body)["message"]


def _publish(tmp_path: Path, url: str, **manifest: Any) -> None:
    folder = tmp_path / url.rsplit("/", 1)[-1]
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"w" * 3000)
    (folder / "config.json").write_text("{}")
    copy(str(folder), url, **manifest)


async def test_published_checkpoints_per_site(jp_fetch, tmp_path: Path) -> None:
    home = core.get_split().config.sites["home"].storage
    await asyncio.to_thread(_publish, tmp_path, f"{home}/ckpts/step-300", labels=["CN"], parents=["abroad:ckpts/base"],
                            run_id="split-demo-home-1", site="home")
    # A folder being written (no manifest yet) is not a checkpoint.
    unpublished = Path(home.removeprefix("file://")) / "ckpts" / "step-400"
    unpublished.mkdir(parents=True)
    (unpublished / "weights.bin").write_bytes(b"partial")

    body = await _json(jp_fetch, "checkpoints")
    assert body["errors"] == {}
    [ckpt] = body["checkpoints"]
    assert ckpt["site"] == "home" and ckpt["name"] == "ckpts/step-300"
    assert ckpt["url"] == f"{home}/ckpts/step-300"
    assert (ckpt["bytes"], ckpt["files"], ckpt["residency"]) == (3002, 2, "CN")
    assert ckpt["lineage"] == ["abroad:ckpts/base"]


def _transfer(jp_fetch, site: str, name: str, to_site: str):
    body = json.dumps({"site": site, "name": name, "to_site": to_site}).encode()
    return jp_fetch("jupyter-split", "checkpoints", "transfer", method="POST", body=body)


async def test_pull_home_is_allowed_and_push_of_resident_data_is_refused(jp_fetch, tmp_path: Path) -> None:
    sites = core.get_split().config.sites
    abroad, home = sites["abroad"].storage, sites["home"].storage
    await asyncio.to_thread(_publish, tmp_path / "a", f"{abroad}/ckpts/pretrain", site="abroad")
    await asyncio.to_thread(_publish, tmp_path / "h", f"{home}/ckpts/tuned", labels=["CN"], site="home")

    pulled = json.loads((await _transfer(jp_fetch, "abroad", "ckpts/pretrain", "home")).body)
    assert pulled["ok"] is True and pulled["files_sent"] == 2 and pulled["published"] is True
    listed = (await _json(jp_fetch, "checkpoints"))["checkpoints"]
    assert {(c["site"], c["name"]) for c in listed} == {("abroad", "ckpts/pretrain"), ("home", "ckpts/pretrain"),
                                                         ("home", "ckpts/tuned")}

    with pytest.raises(HTTPClientError) as err:
        await _transfer(jp_fetch, "home", "ckpts/tuned", "abroad")
    assert err.value.code == 403
    refusal = json.loads(err.value.response.body)
    assert refusal["ok"] is False
    assert "CN" in refusal["refused"] and "abroad" in refusal["refused"] and "Nothing was sent" in refusal["refused"]
    assert not Path(abroad.removeprefix("file://"), "ckpts", "tuned").exists(), "a refused push left bytes abroad"


@pytest.mark.parametrize("body, status, words", [
    ({"site": "home", "name": "ckpts/x"}, 400, "to_site"),
    ({"site": "nowhere", "name": "ckpts/x", "to_site": "home"}, 400, "Known sites: abroad, home"),
    ({"site": "home", "name": "ckpts/x", "to_site": "home"}, 400, "already on site"),
    ({"site": "abroad", "name": "ckpts/missing", "to_site": "home"}, 400, "ckpts/missing does not exist"),
])
async def test_bad_transfer_requests_say_what_to_fix(jp_fetch, body: dict, status: int, words: str) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", "checkpoints", "transfer", method="POST", body=json.dumps(body).encode())
    assert err.value.code == status
    assert words in json.loads(err.value.response.body)["message"]


@pytest.mark.slow
async def test_wandb_lists_the_experiments_offline_runs(jp_fetch) -> None:
    code = "import wandb\nrun = wandb.init()\nwandb.log({'loss': 0.25})\nrun.finish()"
    run_id = await asyncio.to_thread(_start, code)

    async def finished():
        events = (await _json(jp_fetch, "runs", run_id, "events"))["events"]
        return any(e["type"] == "status" and e["state"] in ("succeeded", "failed") for e in events) and events

    events = await _until(finished, "the W&B cell to end", timeout=120)
    assert events[-1]["state"] == "succeeded", events
    [row] = (await _json(jp_fetch, "wandb"))["runs"]
    assert (row["site"], row["mode"], row["state"], row["split_run"]) == ("home", "offline", "finished", run_id)
    assert row["url"] is None and row["metrics"]["loss"] == 0.25


async def test_a_bad_config_is_a_400_that_names_file_and_key(jp_fetch, split_home: Path) -> None:
    write_config(split_home, '[sites.home]\njurisdiction = "CN"\nexecutor = "teleport"\n')
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", "sites")
    assert err.value.code == 400
    message = json.loads(err.value.response.body)["message"]
    assert "jupyter_split.toml" in message and "sites.home.executor" in message


async def test_a_password_in_a_storage_url_stays_off_the_page(jp_fetch, split_home: Path) -> None:
    storage = (split_home / "store").as_uri().replace("file://", "file://alice:hunter2@")
    write_config(split_home, f'[experiment]\ndefault_remote = "home"\n[sites.home]\njurisdiction = "CN"\nstorage = "{storage}"\n')
    body = await _json(jp_fetch, "sites")
    assert "hunter2" not in json.dumps(body)
    assert body["sites"][0]["storage"].startswith("file://alice:***@")


async def test_runs_are_filtered_in_the_index_and_carry_their_notebook(jp_fetch, monkeypatch) -> None:
    # as in a notebook's kernel, which jupyter_server tells the path of its notebook
    monkeypatch.setenv("JPY_SESSION_NAME", "work/train.ipynb")
    trained = await asyncio.to_thread(_start, "print('trained')")
    monkeypatch.delenv("JPY_SESSION_NAME")
    other = await asyncio.to_thread(_start, "print('other')")

    async def rows(**params: str) -> list[dict[str, Any]]:
        return (await _json(jp_fetch, "runs", params=params))["runs"]

    assert {r["run_id"]: r["notebook"] for r in await rows()} == {trained: "work/train.ipynb", other: None}
    assert [r["run_id"] for r in await rows(notebook="work/train.ipynb")] == [trained]
    assert [r["run_id"] for r in await rows(q=other[-6:].upper())] == [other]

    async def both_succeeded() -> bool:  # a page filtered by state sees the runs end (the index refreshed)
        return len(await rows(state="succeeded")) == 2

    await _until(both_succeeded, "the runs to succeed")
    assert {r["run_id"] for r in await rows(state="succeeded", site="home")} == {trained, other}
    assert await rows(state="failed") == []
    with pytest.raises(HTTPClientError) as err:
        await rows(state="finished")
    assert err.value.code == 400 and b"not a run state" in err.value.response.body
