"""Transfers the sidebar watches and cancels, through a real jupyter_server: a checkpoint pulled from
an SFTP site (the test sshd) behind a slow link, its bytes, rate and time left seen while it moves,
a cancel that leaves home's published checkpoints as they were, and the guard's refusal as a state."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_split import sync
from jupyter_split.server import transfers
from jupyter_split.sync.manifest import STAGING_NAME
from tests.fixtures.server import fetch_json
from tests.fixtures.policy import policy_config, toml_table
from tests.services.link import start_link

pytestmark = pytest.mark.slow
pytest_plugins = ["pytest_jupyter.jupyter_server"]

RATE = 2e6  # bytes a second through the link, each way: the pull below takes some 9 s
#: shards of more than a chunk: a copy counts a file's bytes a chunk (8 MiB) at a time
SIZE = 18 << 20
SHARDS = 2


@pytest.fixture
def abroad_store(sshd, split_home: Path):
    """sg's storage is the test sshd's folder `sg-over-link`, reached over SFTP through a slow link."""
    link = start_link(sshd.port, profile="loopback", rate=RATE, flow_rate=RATE)
    known = split_home / "known_hosts_link"
    known.write_text(f"[127.0.0.1]:{link.port} {sshd.host_public_key}\n")
    store = split_home / "sg-over-link"
    store.mkdir()
    options = {"username": sshd.user, "client_keys": [sshd.identity_file], "known_hosts": str(known)}
    policy_config(split_home, sg=f'storage = "ssh://127.0.0.1:{link.port}{store}"\nstorage_options = {toml_table(options)}')
    yield store
    link.stop()


@pytest.fixture
def jp_server_config(split_home: Path, abroad_store: Path) -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"jupyter_split": True}}}


def _publish(folder: Path, url: str, version: int = 0, **manifest: Any) -> None:
    folder.mkdir(parents=True)
    for i in range(SHARDS):
        (folder / f"shard-{i:02d}.bin").write_bytes(bytes([i + 16 * version]) * (SIZE // SHARDS))
    sync.copy(str(folder), url, progress=False, **manifest)


async def _start(jp_fetch, site: str, name: str, to_site: str) -> dict[str, Any]:
    body = json.dumps({"site": site, "name": name, "to_site": to_site}).encode()
    response = await jp_fetch("jupyter-split", "transfers", method="POST", body=body)
    assert response.code == 202
    return json.loads(response.body)


async def _views(jp_fetch, transfer_id: str, until: Any, timeout: float = 120) -> list[dict[str, Any]]:
    """The transfer's views, polled every 0.1 s, until `until(view)` holds."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = (await fetch_json(jp_fetch, "transfers"))["transfers"]
        seen.append(next(t for t in listed if t["id"] == transfer_id))
        if until(seen[-1]):
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"transfer {transfer_id} never got there: {seen[-1]}")


async def _home_checkpoints(jp_fetch) -> set[str]:
    return {c["name"] for c in (await fetch_json(jp_fetch, "checkpoints"))["checkpoints"] if c["site"] == "home"}


async def test_a_pull_shows_its_bytes_rate_and_time_left_as_it_moves(jp_fetch, abroad_store: Path, tmp_path: Path) -> None:
    await asyncio.to_thread(_publish, tmp_path / "big", (abroad_store / "ckpts" / "big").as_uri(), site="sg")
    started = await _start(jp_fetch, "sg", "ckpts/big", "home")
    assert started["state"] == "running" and (started["site"], started["to_site"]) == ("sg", "home")

    seen = await _views(jp_fetch, started["id"], lambda view: view["state"] != "running")
    moving = [v for v in seen if v["state"] == "running" and 0 < v["bytes_done"] < v["bytes_total"]]
    assert moving, "no view showed the copy part way"
    assert all(v["rate"] > 0 and v["eta_s"] is not None and v["eta_s"] > 0 for v in moving)
    done = seen[-1]
    assert done["state"] == "succeeded", done["message"]
    assert done["bytes_done"] == done["bytes_total"] == SIZE and done["eta_s"] is None and done["ended"]
    assert done["files_done"] == done["files_total"] == SHARDS
    assert all(v["files_done"] < v["files_total"] for v in moving)
    assert "ckpts/big" in await _home_checkpoints(jp_fetch)


async def test_a_cancelled_pull_leaves_home_as_it_was_and_a_new_one_completes(jp_fetch, abroad_store: Path,
                                                                             tmp_path: Path) -> None:
    await asyncio.to_thread(_publish, tmp_path / "big", (abroad_store / "ckpts" / "big").as_uri(), site="sg")
    started = await _start(jp_fetch, "sg", "ckpts/big", "home")
    with pytest.raises(HTTPClientError) as err:  # the same copy twice would stage the same files
        await _start(jp_fetch, "sg", "ckpts/big", "home")
    assert err.value.code == 409 and started["id"].encode() in err.value.response.body
    with pytest.MonkeyPatch.context() as patch, pytest.raises(HTTPClientError) as err:
        patch.setattr(transfers, "MAX_RUNNING", 1)  # the server runs in this process
        await _start(jp_fetch, "sg", "ckpts/other", "home")
    assert err.value.code == 429 and b"the most at once" in err.value.response.body
    await _views(jp_fetch, started["id"], lambda view: view["bytes_done"] > 0)
    asked = await fetch_json(jp_fetch, "transfers", started["id"], "cancel", method="POST", body=b"{}")
    assert asked["id"] == started["id"] and (asked["cancelling"] or asked["state"] == "cancelled")

    ended = (await _views(jp_fetch, started["id"], lambda view: view["state"] != "running"))[-1]
    assert ended["state"] == "cancelled", ended
    assert ended["bytes_done"] < SIZE and "is as it was" in ended["message"]
    assert "ckpts/big" not in await _home_checkpoints(jp_fetch), "a cancelled copy published"

    with pytest.raises(HTTPClientError) as err:  # an ended transfer has nothing to cancel
        await jp_fetch("jupyter-split", "transfers", started["id"], "cancel", method="POST", body=b"{}")
    assert err.value.code == 409 and b"already ended (cancelled)" in err.value.response.body

    again = await _start(jp_fetch, "sg", "ckpts/big", "home")
    done = (await _views(jp_fetch, again["id"], lambda view: view["state"] != "running"))[-1]
    assert done["state"] == "succeeded", done["message"]
    assert "ckpts/big" in await _home_checkpoints(jp_fetch)


def _published_files(folder: Path) -> dict[str, bytes]:
    """The files a reader of the checkpoint in `folder` sees: its manifest and what it names (not the staging)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and STAGING_NAME not in p.relative_to(folder).parts}


async def test_a_cancelled_push_over_an_older_version_leaves_that_version_published(jp_fetch, split_home: Path,
                                                                                   abroad_store: Path, tmp_path: Path) -> None:
    there = abroad_store / "ckpts" / "tuned"
    await asyncio.to_thread(_publish, tmp_path / "v1", there.as_uri(), site="sg")
    before = _published_files(there)
    assert "manifest.json" in before
    home_store = split_home / "home-store"
    await asyncio.to_thread(_publish, tmp_path / "v2", (home_store / "ckpts" / "tuned").as_uri(), version=1, site="home")
    started = await _start(jp_fetch, "home", "ckpts/tuned", "sg")
    await _views(jp_fetch, started["id"], lambda view: view["bytes_done"] > 0)
    await fetch_json(jp_fetch, "transfers", started["id"], "cancel", method="POST", body=b"{}")
    ended = (await _views(jp_fetch, started["id"], lambda view: view["state"] != "running"))[-1]
    assert ended["state"] == "cancelled", ended
    assert ended["bytes_done"] < SIZE and "is as it was" in ended["message"]
    assert _published_files(there) == before, "a cancelled push changed what sg's readers see"


async def test_the_guards_refusal_is_the_transfers_state(jp_fetch, split_home: Path, abroad_store: Path,
                                                        tmp_path: Path) -> None:
    home_store = split_home / "home-store"
    await asyncio.to_thread(_publish, tmp_path / "tuned", (home_store / "ckpts" / "tuned").as_uri(), labels=["CN"],
                            site="home")
    started = await _start(jp_fetch, "home", "ckpts/tuned", "sg")
    ended = (await _views(jp_fetch, started["id"], lambda view: view["state"] != "running"))[-1]
    assert ended["state"] == "refused" and "CN" in ended["message"] and ended["bytes_done"] == 0
    assert not (abroad_store / "ckpts" / "tuned").exists(), "a refused push left bytes abroad"


@pytest.mark.parametrize("parts, body, status, words", [
    (("transfers",), {"site": "nowhere", "name": "ckpts/x", "to_site": "home"}, 400, "Known sites"),
    (("transfers",), {"site": "home", "name": "ckpts/x", "to_site": "home"}, 400, "already on site"),
    (("transfers",), {"site": "home", "name": "ckpts/x"}, 400, "to_site"),
    (("transfers", "0123456789abcdef", "cancel"), {}, 404, "no transfer '0123456789abcdef'"),
    (("transfers", "not-an-id", "cancel"), {}, 404, ""),
])
async def test_bad_transfer_requests_say_what_to_fix(jp_fetch, parts: tuple, body: dict, status: int, words: str) -> None:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", *parts, method="POST", body=json.dumps(body).encode())
    assert err.value.code == status
    assert words.encode() in err.value.response.body
