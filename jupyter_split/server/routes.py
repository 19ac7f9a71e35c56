"""REST handlers for the sidebar under `/jupyter-split/`: run states, sites, runs, run events, cancel, checkpoints, W&B,
accelerators and leases.

Each handler is a thin call into the one core (`jupyter_split.core`), run in a worker
thread because the core blocks on its own event loop. Every method is
`@tornado.web.authenticated`; `tests/server/test_routes.py` fails if one is not.
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Callable, TypeVar

import tornado.web
from pydantic import BaseModel
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .. import core
from ..accelerators import poll, usage
from ..errors import SplitError, http_answer
from ..policy import ResidencyError
from ..residency.locations import redact
from ..protocol import states_table
from ..core.split import VIEW_RECORDS
from ..runs.events import run_view
from ..sync import SyncError, checkpoint_rows
from . import bodies, transfer, wandb_runs

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
RUN_ID = r"(?P<run_id>[A-Za-z0-9._-]+)"

#: the most records one events request answers (a panel asks again from the last one)
EVENTS_LIMIT = 2000

class SplitHandler(APIHandler):
    """Shared plumbing: blocking core calls off the server's loop, errors as JSON that say what to do."""

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run a blocking core call in a worker thread. A SplitError a user can fix becomes an HTTP error
        with its class's status and its message; any other error stays a 500."""
        try:
            return await asyncio.to_thread(func, *args)
        except SplitError as exc:
            answer = http_answer(exc)
            if answer is None:
                raise
            raise tornado.web.HTTPError(answer[0], str(exc), reason=answer[1]) from None

    def int_arg(self, name: str, default: int, low: int = 0) -> int:
        """The query argument `name` as an int (`default` when absent); 400 where it is not a whole
        number or is below `low`."""
        text = self.get_query_argument(name, str(default))
        try:
            value = int(text)
        except ValueError:
            raise tornado.web.HTTPError(400, f"query argument {name}={text!r} is not a whole number") from None
        if value < low:
            raise tornado.web.HTTPError(400, f"query argument {name}={value} is below {low}; give {low} or more")
        return value

    def site_arg(self) -> str | None:
        """The query argument `site`, or None; 400 where it cannot be a site's name (the config's rule)."""
        site = self.get_query_argument("site", None)
        if site is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}", site):
            raise tornado.web.HTTPError(400, f"query argument site={site[:200]!r} is not a site name: "
                                             "letters, digits, '_' or '-'")
        return site

    def send(self, body: dict[str, Any]) -> None:
        """Finish the request with `body` as JSON; values JSON cannot hold are written as strings."""
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
        """Answers {states}: the rows of `protocol.RUN_STATES`, in order."""
        self.send({"states": states_table()})


class SitesHandler(SplitHandler):
    """GET /jupyter-split/sites: the experiment, every site and whether it answers, and which config applies."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {experiment, sites, source}: the rows of `Split.sites`, passwords in storage URLs masked."""
        split = await self.call(core.get_split)
        sites = await self.call(split.sites)
        for row in sites:  # a password in a storage URL is for fsspec, not for the page
            row["storage"] = row["storage"] and redact(row["storage"])
        self.send({"experiment": split.config.experiment.model_dump(), "sites": sites, "source": split.config.source})


class RunsHandler(SplitHandler):
    """GET /jupyter-split/runs?site=&limit=: the recent runs, newest first, brought up to date."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {runs}: rows of `Split.list_runs` without the executor handles; 400 for a bad `limit`."""
        site = self.get_query_argument("site", None)
        limit = self.int_arg("limit", 50, low=1)
        split = await self.call(core.get_split)
        records = await self.call(split.list_runs, site, limit)
        self.send({"runs": [_run_row(r) for r in records]})


class RunEventsHandler(SplitHandler):
    """GET /jupyter-split/runs/RUN/events?after=N: a run's state and its event records after N."""

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        """Answers {run, events}; `run` holds the state the log's last records say, so a panel knows when
        to stop asking; `events` are at most `limit` (default 2,000) records after `after`: a panel asks
        again from the last one. 404 where no run matches."""
        after = self.int_arg("after", 0)
        limit = self.int_arg("limit", EVENTS_LIMIT, low=1)
        split = await self.call(core.get_split)
        record = await self.call(split.index.get, run_id)
        events = await self.call(split.run_events, record.run_id, after, 0, limit)
        # The run as its log's end says, so a panel knows when to stop asking; only the news travels.
        view = run_view(await self.call(split.run_tail, record.run_id, VIEW_RECORDS), record.state)
        run = {**_run_row(record), "state": view.state, "last_seq": view.seq, "last_line": view.last_line}
        self.send({"run": run, "events": events})


class CancelHandler(SplitHandler):
    """POST /jupyter-split/runs/RUN/cancel: end a run and answer its final state."""

    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        """Answers {run_id, state} once `Split.cancel` returns; takes an empty body or {}; 404 where no run matches."""
        self.body(bodies.Empty)
        split = await self.call(core.get_split)
        record = await self.call(split.index.get, run_id)
        state = await self.call(split.cancel, record.run_id)
        self.send({"run_id": record.run_id, "state": state})


class CheckpointsHandler(SplitHandler):
    """GET /jupyter-split/checkpoints: the published checkpoints on every site with storage."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {checkpoints, errors}: rows newest first, and for each site whose storage could not be
        listed, why."""
        split = await self.call(core.get_split)
        rows, errors = await self.call(checkpoint_rows, split.config)
        self.send({"checkpoints": rows, "errors": errors})


class TransferHandler(SplitHandler):
    """POST /jupyter-split/checkpoints/transfer: copy a published checkpoint to another site, through
    the residency guard."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Takes {site, name, to_site}; answers {ok: true, message, files and bytes sent, published}.

        A refusal by the guard is a 403 with {ok: false, refused}, a JSON answer the sidebar shows, not an
        error page. An unknown site or a bad source is a 400, a copy that fails on the way a 502.
        """
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
        except SplitError as exc:  # any other error a user can fix: its class's answer (e.g. a site not reachable)
            answer = http_answer(exc)
            if answer is None:
                raise
            raise tornado.web.HTTPError(answer[0], f"copy of {where} failed: {exc}", reason=answer[1]) from None
        self.send({"ok": True, "message": str(report), "files_sent": report.files_sent, "bytes_sent": report.bytes_sent,
                   "files_skipped": report.files_skipped, "published": report.published})


class WandbHandler(SplitHandler):
    """GET /jupyter-split/wandb: the experiment's W&B runs on every site."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {runs}: one row per W&B run, as `SiteRun.row` makes it."""
        split = await self.call(core.get_split)
        self.send({"runs": await self.call(wandb_runs.rows, split)})


class AcceleratorsHandler(SplitHandler):
    """GET /jupyter-split/accelerators?site=: every site's cards and hosts, read no more than once an interval."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {interval, sites}: each site's reading (`accelerators.poll`), no older than `[accelerators]
        interval`; a site is probed only when a request finds its reading older. 400 for an unknown site."""
        site = self.site_arg()
        split = await self.call(core.get_split)
        self.send(await self.call(poll.poller(split).readings, site))


class LeaseHandler(SplitHandler):
    """GET /jupyter-split/lease?site=: each site's lease as configured beside the accelerator-hours used."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {sites, experiment}: `accelerators.usage.leases` from the run index; 400 for an unknown site."""
        site = self.site_arg()
        split = await self.call(core.get_split)
        self.send(await self.call(usage.leases, split, site))


HANDLERS: list[tuple[str, type[SplitHandler]]] = [
    ("states", StatesHandler),
    ("sites", SitesHandler),
    ("runs", RunsHandler),
    (f"runs/{RUN_ID}/events", RunEventsHandler),
    (f"runs/{RUN_ID}/cancel", CancelHandler),
    ("checkpoints", CheckpointsHandler),
    ("checkpoints/transfer", TransferHandler),
    ("wandb", WandbHandler),
    ("accelerators", AcceleratorsHandler),
    ("lease", LeaseHandler),
]


def setup_handlers(web_app: Any) -> None:
    """Register the sidebar's handlers under `<base_url>/jupyter-split/` of the server's web app."""
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base, "jupyter-split", path), handler) for path, handler in HANDLERS])
