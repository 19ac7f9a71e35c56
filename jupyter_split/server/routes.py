"""REST handlers for the sidebar under `/jupyter-split/`: run states, sites, runs, run events, cancel, checkpoints, W&B.

Each handler is a thin call into the one core (`jupyter_split.core`), run in a worker
thread because the core blocks on its own event loop. Every method is
`@tornado.web.authenticated`; `tests/server/test_routes.py` fails if one is not.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, TypeVar

import tornado.web
from pydantic import BaseModel
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .. import core
from ..errors import SplitError, http_answer
from ..policy import ResidencyError
from ..residency.locations import redact
from ..protocol import states_table
from ..runs.events import run_view
from ..sync import SyncError, checkpoint_rows
from . import bodies, transfer, wandb_runs

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
RUN_ID = r"(?P<run_id>[A-Za-z0-9._-]+)"


class SplitHandler(APIHandler):
    """Shared plumbing: blocking core calls off the server's loop, errors as JSON that say what to do."""

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(func, *args)
        except SplitError as exc:
            answer = http_answer(exc)
            if answer is None:
                raise
            raise tornado.web.HTTPError(answer[0], str(exc), reason=answer[1]) from None

    def int_arg(self, name: str, default: int, low: int = 0) -> int:
        text = self.get_query_argument(name, str(default))
        try:
            value = int(text)
        except ValueError:
            raise tornado.web.HTTPError(400, f"query argument {name}={text!r} is not a whole number") from None
        if value < low:
            raise tornado.web.HTTPError(400, f"query argument {name}={value} is below {low}; give {low} or more")
        return value

    def send(self, body: dict[str, Any]) -> None:
        self.finish(json.dumps(body, default=str))

    def body(self, model: type[M]) -> M:
        """The request body as `model`; anything else is a 400 that names the field and why."""
        try:
            return bodies.parse(self.request.body or b"", model)
        except bodies.BodyError as exc:
            raise tornado.web.HTTPError(400, str(exc), reason="invalid request body") from None


def _run_row(record: Any) -> dict[str, Any]:
    row = record.to_dict()
    row.pop("handle")  # pids and socket paths: the sidebar has no use for them
    return row


class StatesHandler(SplitHandler):
    """Every run state, whether it is terminal and its badge style: the sidebar keeps no list of its own."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.send({"states": states_table()})


class SitesHandler(SplitHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        split = await self.call(core.get_split)
        sites = await self.call(split.sites)
        for row in sites:  # a password in a storage URL is for fsspec, not for the page
            row["storage"] = row["storage"] and redact(row["storage"])
        self.send({"experiment": split.config.experiment.model_dump(), "sites": sites, "source": split.config.source})


class RunsHandler(SplitHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        site = self.get_query_argument("site", None)
        limit = self.int_arg("limit", 50, low=1)
        split = await self.call(core.get_split)
        records = await self.call(split.list_runs, site, limit)
        self.send({"runs": [_run_row(r) for r in records]})


class RunEventsHandler(SplitHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        after = self.int_arg("after", 0)
        split = await self.call(core.get_split)
        record = await self.call(split.index.get, run_id)
        events = await self.call(split.run_events, record.run_id)
        # The run as its whole log says, so a panel knows when to stop asking; only the news travels.
        view = run_view(events, record.state)
        run = {**_run_row(record), "state": view.state, "last_seq": view.seq, "last_line": view.last_line}
        self.send({"run": run, "events": [e for e in events if e["seq"] > after]})


class CancelHandler(SplitHandler):
    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        self.body(bodies.Empty)
        split = await self.call(core.get_split)
        record = await self.call(split.index.get, run_id)
        state = await self.call(split.cancel, record.run_id)
        self.send({"run_id": record.run_id, "state": state})


class CheckpointsHandler(SplitHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        split = await self.call(core.get_split)
        rows, errors = await self.call(checkpoint_rows, split.config)
        self.send({"checkpoints": rows, "errors": errors})


class TransferHandler(SplitHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.body(bodies.Transfer)
        split = await self.call(core.get_split)
        where = f"{body.site}:{body.name} to site {body.to_site!r}"
        try:
            # this copy's errors get their own answers below (a refusal is a JSON body, not an error page)
            report = await asyncio.to_thread(transfer.copy_to_site, split.config, body.site, body.name, body.to_site)
        except ResidencyError as exc:
            self.set_status(403)
            self.send({"ok": False, "refused": str(exc), "message": str(exc)})
            return
        except ValueError as exc:  # a bad manifest or plan: the source is at fault, not the server
            raise tornado.web.HTTPError(400, f"copy of {where} not started: {exc}") from None
        except (SyncError, OSError) as exc:
            raise tornado.web.HTTPError(502, f"copy of {where} failed: {exc}") from None
        self.send({"ok": True, "message": str(report), "files_sent": report.files_sent, "bytes_sent": report.bytes_sent,
                   "files_skipped": report.files_skipped, "published": report.published})


class WandbHandler(SplitHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        split = await self.call(core.get_split)
        self.send({"runs": await self.call(wandb_runs.rows, split)})


HANDLERS: list[tuple[str, type[SplitHandler]]] = [
    ("states", StatesHandler),
    ("sites", SitesHandler),
    ("runs", RunsHandler),
    (f"runs/{RUN_ID}/events", RunEventsHandler),
    (f"runs/{RUN_ID}/cancel", CancelHandler),
    ("checkpoints", CheckpointsHandler),
    ("checkpoints/transfer", TransferHandler),
    ("wandb", WandbHandler),
]


def setup_handlers(web_app: Any) -> None:
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base, "jupyter-split", path), handler) for path, handler in HANDLERS])
