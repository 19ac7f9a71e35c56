"""The border pane's REST through a real jupyter_server: the policy in force, the audit log's decisions
with filters and counts, declassify from a refusal, and the guard's dry run (nothing moves, nothing audited)."""
from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_split import core
from jupyter_split.sync import copy
from tests.fixtures.server import fetch_json

pytest_plugins = ["pytest_jupyter.jupyter_server"]

PRC_ID = "11010519491231002X"  # GB 11643's own worked example


async def _error(jp_fetch, *parts: str, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("jupyter-split", *parts, **kwargs)
    return err.value.code, json.loads(err.value.response.body)["message"]


def _publish(tmp_path: Path, url: str, content: bytes = b"w" * 3000, **manifest: Any) -> None:
    folder = tmp_path / url.rsplit("/", 1)[-1]
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(content)
    copy(str(folder), url, **manifest)


def _post(jp_fetch, route: str, body: dict[str, Any]):
    return jp_fetch("jupyter-split", *route.split("/"), method="POST", body=json.dumps(body).encode())


def _storage(site: str) -> str:
    return core.get_split().config.sites[site].storage


def _audit_bytes() -> bytes:
    path = core.get_split().config.audit_log_path()
    return path.read_bytes() if path.exists() else b""


async def _refused_push(jp_fetch, tmp_path: Path) -> None:
    """A labelled checkpoint at home, and its push abroad: refused, audited."""
    await asyncio.to_thread(_publish, tmp_path / "h", f"{_storage('home')}/ckpts/tuned", labels=["CN"], site="home")
    code, _ = await _error(jp_fetch, "checkpoints", "transfer", method="POST",
                           body=json.dumps({"site": "home", "name": "ckpts/tuned", "to_site": "abroad"}).encode())
    assert code == 403


async def test_border_shows_the_policy_and_counts_each_decision(jp_fetch, tmp_path: Path) -> None:
    empty = await fetch_json(jp_fetch, "border")
    assert empty["entries"] == [] and empty["counts"] == {"allowed": 0, "refused": 0, "declassified": 0}
    rules = empty["policy"]
    assert rules["home"] == {"site": "home", "jurisdiction": "CN"}
    assert {s["name"]: s["jurisdiction"] for s in rules["sites"]} == {"home": "CN", "abroad": "SG"}
    assert rules["scan"]["enabled"] is True and rules["metrics_abroad"] is None and "resident" in rules

    await asyncio.to_thread(_publish, tmp_path / "a", f"{_storage('abroad')}/ckpts/pretrain", site="abroad")
    await _post(jp_fetch, "checkpoints/transfer", {"site": "abroad", "name": "ckpts/pretrain", "to_site": "home"})
    await _refused_push(jp_fetch, tmp_path)

    # Allowed: the publication abroad (from this machine, at home) and the pull home; refused: the push.
    body = await fetch_json(jp_fetch, "border")
    assert body["counts"] == {"allowed": 2, "refused": 1, "declassified": 0} and body["total"] == 3
    newest, pulled, published = body["entries"]
    assert (newest["decision"], newest["to_site"], newest["labels"]) == ("refused", "abroad", ["CN"])
    assert (pulled["decision"], pulled["from_site"], pulled["to_site"]) == ("allowed", "abroad", "home")
    assert (published["decision"], published["to_site"]) == ("allowed", "abroad")

    refused = await fetch_json(jp_fetch, "border", params={"decision": "refused"})
    assert [e["decision"] for e in refused["entries"]] == ["refused"] and refused["total"] == 1
    assert refused["counts"] == body["counts"]  # per decision, whatever decision is shown
    assert (await fetch_json(jp_fetch, "border", params={"kind": "variable"}))["total"] == 0
    assert (await fetch_json(jp_fetch, "border", params={"since": "2999-01-01"}))["entries"] == []
    assert (await fetch_json(jp_fetch, "border", params={"site": "nowhere"}))["entries"] == []
    assert (await fetch_json(jp_fetch, "border", params={"site": "home"}))["total"] == 3  # home at one end of each
    assert len((await fetch_json(jp_fetch, "border", params={"limit": "1"}))["entries"]) == 1


async def test_border_counts_what_it_decided_today_and_names_the_kinds(jp_fetch, tmp_path: Path) -> None:
    await _refused_push(jp_fetch, tmp_path)
    body = await fetch_json(jp_fetch, "border")
    assert body["today"] == body["counts"] == {"allowed": 0, "refused": 1, "declassified": 0}
    assert body["kinds"] == ["copy"]

    # "today" is the page's own day: it sends its midnight with its UTC offset
    now = datetime.now().astimezone()
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
    later = await fetch_json(jp_fetch, "border", params={"today": tomorrow})
    assert later["today"] == {"allowed": 0, "refused": 0, "declassified": 0}
    assert later["counts"] == body["counts"]  # all time stays all time
    yesterday = (now - timedelta(days=1)).date().isoformat()
    assert (await fetch_json(jp_fetch, "border", params={"today": yesterday}))["today"] == body["counts"]

    # filtered like the counts: by site and kind; the kinds offered are those under the site and date filters
    assert (await fetch_json(jp_fetch, "border", params={"kind": "variable"}))["today"]["refused"] == 0
    assert (await fetch_json(jp_fetch, "border", params={"kind": "variable"}))["kinds"] == ["copy"]
    assert (await fetch_json(jp_fetch, "border", params={"site": "nowhere"}))["kinds"] == []


@pytest.mark.parametrize("params, words", [
    ({"decision": "maybe"}, "allowed, refused, declassified"),
    ({"today": "noon"}, "not a date"),
    ({"today": "9" * 60}, "too long"),
    ({"kind": "Copy; DROP"}, "kind="),
    ({"site": "../etc"}, "not a site name"),
    ({"since": "yesterday"}, "not a date"),
    ({"since": "9" * 60}, "too long"),
    ({"limit": "0"}, "below 1"),
    ({"limit": "5000"}, "above 1000"),
    ({"limit": "lots"}, "not a whole number"),
])
async def test_a_bad_filter_is_a_400_with_the_reason(jp_fetch, params: dict[str, str], words: str) -> None:
    code, message = await _error(jp_fetch, "border", params=params)
    assert code == 400 and words in message


async def test_no_personal_value_reaches_the_pane(jp_fetch, tmp_path: Path) -> None:
    # No label: the content scan refuses it at the border, and audits what it found, masked and hashed.
    content = f"name,id\nzhang,{PRC_ID}\n".encode()
    await asyncio.to_thread(_publish, tmp_path / "h", f"{_storage('home')}/ckpts/table", content, site="home")
    code, message = await _error(jp_fetch, "checkpoints", "transfer", method="POST",
                                 body=json.dumps({"site": "home", "name": "ckpts/table", "to_site": "abroad"}).encode())
    assert code == 403 and PRC_ID not in message
    assert hashlib.sha256(PRC_ID.encode()).hexdigest().encode() in _audit_bytes()  # the log keeps the hash
    raw = (await jp_fetch("jupyter-split", "border")).body.decode()
    [entry] = json.loads(raw)["entries"]
    assert entry["decision"] == "refused" and entry["findings"][0]["kind"] == "prc_id"
    assert entry["findings"][0]["masked"] and "sha256" not in entry["findings"][0]
    assert PRC_ID not in raw and PRC_ID[6:14] not in raw
    assert hashlib.sha256(PRC_ID.encode()).hexdigest() not in raw


async def test_declassify_a_refusal_audits_it_and_the_transfer_then_goes(jp_fetch, tmp_path: Path) -> None:
    await _refused_push(jp_fetch, tmp_path)
    [refusal] = (await fetch_json(jp_fetch, "border", params={"decision": "refused"}))["entries"]
    answer = json.loads((await _post(jp_fetch, "border/declassify",
                                     {"item": refusal["item"], "reason": "  approved: ticket DPO-7  ", "confirm": True})).body)
    assert answer["ok"] is True
    entry = answer["entry"]
    assert (entry["decision"], entry["kind"], entry["reason"]) == ("declassified", "declassify", "approved: ticket DPO-7")
    assert entry["item"] == refusal["item"]
    border = await fetch_json(jp_fetch, "border")
    assert border["counts"]["declassified"] == 1 and border["entries"][0]["decision"] == "declassified"
    # The same register the CLI reads: the guard now lets it go.
    check = json.loads((await _post(jp_fetch, "checkpoints/check",
                                    {"site": "home", "name": "ckpts/tuned", "to_site": "abroad"})).body)
    assert check["allowed"] is True and check["labels"] == ["CN"]
    pushed = json.loads((await _post(jp_fetch, "checkpoints/transfer",
                                     {"site": "home", "name": "ckpts/tuned", "to_site": "abroad"})).body)
    assert pushed["ok"] is True


@pytest.mark.parametrize("body, words", [
    ({"item": "ckpts/x", "confirm": True}, "`reason` is missing"),
    ({"item": "ckpts/x", "reason": "   ", "confirm": True}, "blank"),
    ({"item": "ckpts/x", "reason": "", "confirm": True}, "reason"),
    ({"item": "ckpts/x", "reason": "ok", "confirm": False}, "must be true"),
    ({"item": "ckpts/x", "reason": "ok", "confirm": "yes"}, "`confirm`"),
    ({"item": "ckpts/x", "reason": "ok"}, "`confirm` is missing"),
    ({"item": "ckpts/x", "reason": "two\nlines", "confirm": True}, "control character"),
    ({"item": "", "reason": "ok", "confirm": True}, "`item`"),
    ({"item": "ckpts/x", "reason": "ok", "confirm": True, "user": "someone"}, "`user` is not a field"),
    ([], "must be a JSON object"),
])
async def test_a_bad_declassify_body_is_a_400_and_audits_nothing(jp_fetch, body: Any, words: str) -> None:
    code, message = await _error(jp_fetch, "border", "declassify", method="POST", body=json.dumps(body).encode())
    assert code == 400 and words in message, message
    assert _audit_bytes() == b""


async def test_the_dry_run_moves_nothing_and_audits_nothing(jp_fetch, tmp_path: Path) -> None:
    await asyncio.to_thread(_publish, tmp_path / "h", f"{_storage('home')}/ckpts/tuned", labels=["CN"], site="home")
    await asyncio.to_thread(_quiet_publish, tmp_path / "a", f"{_storage('abroad')}/ckpts/pretrain", site="abroad")
    home, abroad = (Path(_storage(s).removeprefix("file://")) for s in ("home", "abroad"))

    refused = json.loads((await _post(jp_fetch, "checkpoints/check",
                                      {"site": "home", "name": "ckpts/tuned", "to_site": "abroad"})).body)
    assert refused["allowed"] is False and refused["labels"] == ["CN"]
    assert "CN" in refused["reasons"][0] and "abroad" in refused["reasons"][0] and "declassify" in refused["message"]
    allowed = json.loads((await _post(jp_fetch, "checkpoints/check",
                                      {"site": "abroad", "name": "ckpts/pretrain", "to_site": "home"})).body)
    assert allowed == {"allowed": True, "reasons": [], "message": "", "labels": []}

    assert _audit_bytes() == b"", "a dry run wrote to the audit log"
    assert not (abroad / "ckpts" / "tuned").exists() and not (home / "ckpts" / "pretrain").exists()
    assert (await fetch_json(jp_fetch, "border"))["counts"] == {"allowed": 0, "refused": 0, "declassified": 0}


def _quiet_publish(tmp_path: Path, url: str, **manifest: Any) -> None:
    """Publish without an audit line (this machine's copy abroad is a crossing of its own)."""
    _publish(tmp_path, url, **manifest)
    core.get_split().config.audit_log_path().unlink(missing_ok=True)


@pytest.mark.parametrize("body, status, words", [
    ({"site": "home", "name": "ckpts/x"}, 400, "to_site"),
    ({"site": "nowhere", "name": "ckpts/x", "to_site": "home"}, 400, "Known sites: abroad, home"),
    ({"site": "home", "name": "ckpts/x", "to_site": "home"}, 400, "already on site"),
    ({"site": "abroad", "name": "ckpts/missing", "to_site": "home"}, 400, "ckpts/missing does not exist"),
    ({"site": "abroad", "name": "../../etc", "to_site": "home"}, 400, "checkpoint path"),
])
async def test_a_bad_check_request_says_what_to_fix(jp_fetch, body: dict, status: int, words: str) -> None:
    code, message = await _error(jp_fetch, "checkpoints", "check", method="POST", body=json.dumps(body).encode())
    assert code == status and words in message, message
