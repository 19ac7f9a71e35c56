"""REST handlers for the sidebar under `/jupyter-split/`: run states, sites, runs, run events, cancel and
interrupt, checkpoints (with the guard's dry run), W&B, accelerators and leases; the border's are in `border.py`.

Each handler is a thin call into the one core (`jupyter_split.core`), run in a worker
thread because the core blocks on its own event loop (`base.SplitHandler`). Every method is
`@tornado.web.authenticated`; `tests/server/test_routes.py` fails if one is not.
"""
from __future__ import annotations

import asyncio
import math
import time
import weakref
from typing import Any

import tornado.web
from jupyter_server.utils import url_path_join

from .. import core
from ..accelerators import poll, usage
from ..errors import SplitError, http_answer
from ..policy import ResidencyError
from ..residency.locations import redact
from ..protocol import STATE_NAMES, TERMINAL_STATES, states_table
from ..core.split import VIEW_RECORDS
from ..runs.events import run_view
from ..sync import SyncError, checkpoint_rows
from . import bodies, border, sessions, tail, transfer, transfers, wandb_runs
from .base import Answers, SplitHandler

RUN_ID = r"(?P<run_id>[A-Za-z0-9._-]+)"

#: the most records one events request answers (a panel asks again from the last one)
EVENTS_LIMIT = 2000
#: the most runs one runs request answers (the sidebar asks for pages of 50, older ones with `before`)
RUNS_LIMIT = 1000
#: seconds a probe of the sites answers polls: a poll within them reaches no site
SITES_FRESH = 10.0

_RUN_PAGES = Answers()  # by (index, query): the last runs answer and the index version it was built at
_SITES = Answers(size=1)  # the last sites answer, the core it was probed by and when

def _run_row(record: Any) -> dict[str, Any]:
    row = record.to_dict()
    handle = row.pop("handle")  # pids and socket paths: the sidebar has no use for them
    row["notebook"] = handle.get("notebook")
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
        """Answers {experiment, sites, source}: the rows of `Split.sites`, passwords in storage URLs masked.
        The sites are probed at most once every `SITES_FRESH` seconds; a poll in between gets that probe's
        answer (a 304 where its ETag matches)."""
        self.send_answer(await self.call(_sites_answer))


class RunsHandler(SplitHandler):
    """GET /jupyter-split/runs?site=&state=&q=&notebook=&limit=&before=: the recent runs, newest first, brought
    up to date; filtered in the run index, so a filter finds old runs too; paged by `created`, so a page
    far back costs what the first does."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {runs, next}: rows of `Split.list_runs` without the executor handles (each with the notebook
        it came from, or null), and `next`, the `before` of the page after this one (null where no older run
        passes the filters). `q` keeps the runs whose id or name holds it; `before` (a `created`, seconds since
        the epoch) those created before it. 400 for a bad `limit` (1 to `RUNS_LIMIT`), `state` or `before`."""
        site = self.site_arg()
        limit = self.int_arg("limit", 50, low=1, high=RUNS_LIMIT)
        before = self._before()
        state = self.get_query_argument("state", None) or None
        if state is not None and state not in STATE_NAMES:
            raise tornado.web.HTTPError(400, f"query argument state={state[:50]!r} is not a run state: one of "
                                             f"{', '.join(STATE_NAMES)}")
        text = self.get_query_argument("q", None) or None
        notebook = self.get_query_argument("notebook", None) or None
        for name, value in (("q", text), ("notebook", notebook)):
            if value is not None and len(value) > 1000:
                raise tornado.web.HTTPError(400, f"query argument {name} is {len(value)} characters; give 1000 or fewer")
        self.send_answer(await self.call(_runs_answer, site, limit, state, text, notebook, before))

    def _before(self) -> float | None:
        """The query argument `before` as a finite number of seconds, or None; 400 where it is not one."""
        text = self.get_query_argument("before", None)
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise tornado.web.HTTPError(400, f"query argument before={text[:50]!r} is not a time: give the "
                                             "`created` of the last run of a page (seconds since the epoch)")
        return value


def _runs_answer(site: str | None, limit: int, state: str | None = None, text: str | None = None,
                 notebook: str | None = None, before: float | None = None) -> Any:
    """The runs page, from `_RUN_PAGES` while the index's version is the one it was built at and it
    held no active run (an active run's log may have grown: `list_runs` reads its tail every time).
    One row more than the page is read: whether it exists says if there is a page after this one."""
    split = core.get_split()  # in the same worker thread: an unchanged poll is one hop off the loop
    key = (str(split.index.path), site, limit, state, text, notebook, before)
    version = split.index.version()  # read before the rows: a write meanwhile makes the next poll build again
    kept = _RUN_PAGES.get(key, version)
    if kept is not None:
        return kept
    records = split.list_runs(site, limit + 1, before, state=state, text=text, notebook=notebook)
    records, more = records[:limit], len(records) > limit
    # a page filtered by state hides the active rows whose refresh would change it: built each time
    live = state is not None or any(r.state not in TERMINAL_STATES for r in records)
    body = {"runs": [_run_row(r) for r in records], "next": records[-1].created if more else None}
    return _RUN_PAGES.put(key, version, body, live=live)


def _sites_answer() -> Any:
    """The sites answer, probed again only once the last probe is `SITES_FRESH` seconds old."""
    split = core.get_split()
    kept = _SITES.latest("sites")
    # a new core (the config changed) probes afresh; a weak reference, as an id may be reused
    if kept is not None and kept.token[0]() is split and time.monotonic() - kept.token[1] < SITES_FRESH:
        return kept
    began = time.monotonic()
    sites = split.sites()
    for row in sites:  # a password in a storage URL is for fsspec, not for the page
        row["storage"] = row["storage"] and redact(row["storage"])
    body = {"experiment": split.config.experiment.model_dump(), "sites": sites, "source": split.config.source}
    return _SITES.put("sites", (weakref.ref(split), began), body)


class RunEventsHandler(SplitHandler):
    """GET /jupyter-split/runs/RUN/events?after=N (or ?tail=N): a run's state and its event records after
    N (or those holding its last N lines)."""

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        """Answers {run, events, window}; `run` holds the state the log's last records say, so a panel knows
        when to stop asking; `events` are at most `limit` (1 to `EVENTS_LIMIT`, 2,000, the default) records
        after `after`: a panel asks again from the last one. `tail=N` (N > 0; `tail=window`: the window's lines) answers instead the log's
        records that hold its last N lines (`tail.tail_records`, read back from its end): a panel opens there, not at
        `seq` 0. `window` is what a panel keeps (`tail.window`: the config's scrollback). 404 where no run
        matches."""
        after = self.int_arg("after", 0)
        limit = self.int_arg("limit", EVENTS_LIMIT, low=1, high=EVENTS_LIMIT)
        split = await self.call(core.get_split)
        shape = tail.window(split)
        # `tail=window`: as many lines as the panel keeps, which it learns from this very answer
        asked = self.get_query_argument("tail", "")
        lines = shape["lines"] if asked == "window" else self.int_arg("tail", 0, high=1_000_000)
        record = await self.call(split.index.get, run_id)
        if lines:
            events = await self.call(tail.tail_records, split, record.run_id, lines)
        else:
            events = await self.call(split.run_events, record.run_id, after, 0, limit)
        # The run as its log's end says, so a panel knows when to stop asking; only the news travels.
        view = run_view(await self.call(split.run_tail, record.run_id, VIEW_RECORDS), record.state)
        run = {**_run_row(record), "state": view.state, "last_seq": view.seq, "last_line": view.last_line}
        self.send({"run": run, "events": events, "window": shape})


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


class InterruptHandler(SplitHandler):
    """POST /jupyter-split/runs/RUN/interrupt: a KeyboardInterrupt in a run's cell, as a notebook's stop button
    sends: the run ends `interrupted` and its session lives on, its variables kept."""

    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        """Takes an empty body or {}; answers {run_id, state} once `Split.interrupt` sent the signal: the state
        the run was in (its end shows at the next poll). 404 where no run matches; 409 for a run that has
        ended, or a cell queued on a session behind another (the signal would stop that one)."""
        self.body(bodies.Empty)
        split = await self.call(core.get_split)
        record = await self.call(split.index.get, run_id)
        state = await self.call(split.interrupt, record.run_id)
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
        try:
            report = await _copy_call(transfer.copy_to_site, split.config, body, "copy")
        except ResidencyError as exc:
            self.set_status(403)
            self.send({"ok": False, "refused": str(exc), "message": str(exc)})
            return
        self.send({"ok": True, "message": str(report), "files_sent": report.files_sent, "bytes_sent": report.bytes_sent,
                   "files_skipped": report.files_skipped, "published": report.published})


class TransferCheckHandler(SplitHandler):
    """POST /jupyter-split/checkpoints/check: would the guard let this transfer go? A dry run: nothing
    moves and nothing is audited."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Takes {site, name, to_site} as the transfer does; answers {allowed, reasons, labels}: the guard's
        decision on the very files the copy would send (`transfer.check_to_site`), each refusal in words.
        The same 400s as the transfer for an unknown site or a bad source."""
        body = self.body(bodies.Transfer)
        split = await self.call(core.get_split)
        self.send(await _copy_call(transfer.check_to_site, split.config, body, "check of the copy"))


async def _copy_call(func: Any, config: Any, body: bodies.Transfer, what: str) -> Any:
    """`func(config, site, name, to_site)` in a worker thread, its errors as the answers a copy gives: a bad
    source a 400, a copy that fails on the way a 502 (a refusal is left to the caller: it is JSON, not an error)."""
    where = f"{what} of {body.site}:{body.name} to site {body.to_site!r}"
    try:
        return await asyncio.to_thread(func, config, body.site, body.name, body.to_site)
    except ResidencyError:
        raise
    except ValueError as exc:  # a bad manifest or plan: the source is at fault, not the server
        raise tornado.web.HTTPError(400, f"{where} not started: {exc}") from None
    except (SyncError, OSError) as exc:
        raise tornado.web.HTTPError(502, f"{where} failed: {exc}") from None
    except SplitError as exc:  # any other error a user can fix: its class's answer (e.g. a site not reachable)
        answer = http_answer(exc)
        if answer is None:
            raise
        raise tornado.web.HTTPError(answer[0], f"{where} failed: {exc}", reason=answer[1]) from None


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
    (f"runs/{RUN_ID}/interrupt", InterruptHandler),
    ("checkpoints", CheckpointsHandler),
    ("checkpoints/transfer", TransferHandler),
    ("checkpoints/check", TransferCheckHandler),
    ("wandb", WandbHandler),
    ("accelerators", AcceleratorsHandler),
    ("lease", LeaseHandler),
    *border.HANDLERS,
    *sessions.HANDLERS,
    *transfers.HANDLERS,
]


def setup_handlers(web_app: Any) -> None:
    """Register the sidebar's handlers under `<base_url>/jupyter-split/` of the server's web app."""
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base, "jupyter-split", path), handler) for path, handler in HANDLERS])
