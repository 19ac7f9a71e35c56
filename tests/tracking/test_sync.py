"""`jupyter-split wandb sync` through wandb's own `wandb sync` to a W&B server STAND-IN.

A W&B server cannot run here (it is a hosted service or a licensed container image),
so a small HTTP stand-in on 127.0.0.1 answers the few calls `wandb sync` makes
(GraphQL `UpsertBucket` and `CreateRunFiles`, the file stream, file uploads) and
records them. Everything else is real: the runs come from the core's runners, the
filtered copy is read by wandb's own client, and the policy decides what may go.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from jupyter_split import core
from jupyter_split.core.outcome import CellOptions
from jupyter_split.policy import audit_entries
from tests.fixtures.core import write_config

pytestmark = pytest.mark.slow

SERVER_KEY = secrets.token_hex(20)   # 40 characters, the shape of a W&B key


class WandbServerStandIn:
    """Records every call; answers just enough of W&B's API for `wandb sync` to finish."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    message = json.loads(body)
                except ValueError:
                    message = {}
                op = message.get("operationName") if isinstance(message, dict) else None
                stand_in.calls.append({"path": self.path, "op": op, "body": message,
                                       "auth": self.headers.get("authorization", "")})
                self._reply(stand_in.answer(self.path, op, message))

            def do_PUT(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                stand_in.calls.append({"path": self.path, "op": "PUT", "body": {}, "auth": ""})
                self._reply({})

            def _reply(self, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, op: str | None, message: dict[str, Any]) -> dict[str, Any]:
        variables = message.get("variables") or {}
        if path.endswith("/file_stream"):
            return {"exitcode": None, "limits": {}}
        if op == "UpsertBucket":
            project = {"id": "p", "name": variables.get("project"), "entity": {"id": "e", "name": "team"}}
            return {"data": {"upsertBucket": {"inserted": True, "bucket": {
                "id": "b", "name": variables.get("name"), "displayName": variables.get("displayName"),
                "sweepName": None, "historyLineCount": 0, "config": variables.get("config"), "project": project}}}}
        if op == "CreateRunFiles":
            files = [{"name": f, "uploadUrl": f"{self.url}/upload/{f}"} for f in variables["files"]]
            return {"data": {"createRunFiles": {"runID": "r", "uploadHeaders": [], "files": files}}}
        if op == "Viewer":
            return {"data": {"viewer": {"id": "u", "entity": "team", "username": "u", "flags": "{}", "teams": {"edges": []}}}}
        return {"data": {}}  # no artifacts here: an artifact lookup finds nothing

    def streamed(self, name: str) -> list[dict[str, Any]]:
        """The lines of one run file (`wandb-history.jsonl`, `wandb-summary.json`) sent over the file stream."""
        return [json.loads(line) for call in self.calls if call["path"].endswith("/file_stream")
                for line in call["body"].get("files", {}).get(name, {}).get("content", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in() -> Iterator[WandbServerStandIn]:
    server = WandbServerStandIn()
    yield server
    server.close()


CELL = """\
import torch, wandb
from jupyter_split import ckpt
state = ckpt.load("{home}/base")                       # a checkpoint this run uses
rows = open("{pii}").read().splitlines()[1:]           # resident data: the run is now labelled CN
print("rows of personal data:", rows)
for step in range(3):
    wandb.log({{"loss": 1 / (step + 1), "eval/acc": 0.5 + step / 10, "pii_rows": len(rows)}})
ckpt.save({{k: v + 1 for k, v in state.items()}}, "{home}/ft")"""


def test_sync_abroad_sends_only_what_the_policy_allows(split_home, stand_in, monkeypatch):
    home = (split_home / "store" / "home").as_uri()
    pii = split_home / "pii"
    pii.mkdir()
    (pii / "users.csv").write_text("id,name\n1,Li Wei\n")
    write_config(split_home, f"""
[experiment]
name = "llm-split"
home = "home"
default_remote = "sg"
[sites.sg]
jurisdiction = "SG"
accelerator = "cpu"
wandb = {{ mode = "offline", base_url = "{stand_in.url}", jurisdiction = "US" }}
[sites.home]
jurisdiction = "CN"
accelerator = "cpu"
storage = "{home}"
wandb = {{ mode = "offline", base_url = "https://wandb.corp.example" }}
[policy]
resident = ["{pii.as_uri()}/**"]
metrics_abroad = ["loss", "eval/*"]
""")
    split = core.get_split()
    quiet: list[dict] = []
    base = split.execute(f'import torch\nfrom jupyter_split import ckpt\nckpt.save({{"w": torch.ones(3)}}, "{home}/base")',
                         CellOptions(site="home"), {}, quiet.append)
    tuned = split.execute(CELL.format(home=home, pii=pii / "users.csv"), CellOptions(site="home", wandb=True, name="finetune"),
                          {}, quiet.append)
    assert (base.state, tuned.state) == ("succeeded", "succeeded"), quiet

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_API_KEY")}
    env["WANDB_API_KEY_SG"] = SERVER_KEY    # the key for the sg site's server, and only there
    cli = [sys.executable, "-m", "jupyter_split.cli", "wandb", "sync", "--to", "sg"]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"synced to {stand_in.url} (US)" in done.stdout
    assert "artifact kept back: ckpt-ft" in done.stdout
    assert "could not record the use of ckpt-base:sha-" in done.stdout   # the stand-in keeps no artifacts

    [bucket] = [c["body"]["variables"] for c in stand_in.calls if c["op"] == "UpsertBucket"][:1]
    assert bucket["groupName"] == "llm-split" and bucket["jobType"] == "finetune"
    assert "site:home" in bucket["tags"] and "jurisdiction:CN" in bucket["tags"]
    assert json.loads(bucket["config"])["split"]["value"]["site"] == "home"
    history = stand_in.streamed("wandb-history.jsonl")
    assert [row["loss"] for row in history] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert all("pii_rows" not in row for row in history) and history[-1]["eval/acc"] == pytest.approx(0.7)
    assert all("pii_rows" not in row for row in stand_in.streamed("wandb-summary.json"))
    sent = json.dumps(stand_in.calls)
    assert "Li Wei" not in sent                                             # console output stayed home
    assert "output.log" not in sent
    assert not [c for c in stand_in.calls if c["op"] and "CreateArtifact" in c["op"]]
    lookups = [c["body"]["variables"]["name"] for c in stand_in.calls
               if "ArtifactMembershipByName" in json.dumps(c["body"].get("query", ""))]
    assert lookups and all(name.startswith("ckpt-base:sha-") for name in lookups)
    auth = {base64.b64decode(c["auth"].split()[1]).decode() for c in stand_in.calls if c["auth"].startswith("Basic ")}
    assert auth == {f"api:{SERVER_KEY}"}

    [refused] = audit_entries(decision="refused")
    assert (refused["kind"], refused["item"], refused["to_jurisdiction"]) == ("wandb-artifact", "ckpt-ft", "US")

    calls = len(stand_in.calls)
    again = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert "already synced" in again.stdout and len(stand_in.calls) == calls
