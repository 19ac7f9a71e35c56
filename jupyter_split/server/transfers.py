"""Transfers the sidebar can watch and cancel.

POST /jupyter-split/transfers starts the copy POST /checkpoints/transfer makes (a published checkpoint
to another site, through the residency guard) in the background and answers its id at once; GET
/jupyter-split/transfers lists this server's transfers with their bytes, rate and time left; POST
/jupyter-split/transfers/ID/cancel stops one at its next bytes sent. A copy publishes its manifest
only once every file is whole and verified, so a cancelled one leaves the destination's published
checkpoint as it was (its staged files stay, and the next copy resumes from them).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import tornado.web

from .. import core
from ..config import Config
from ..errors import SplitError
from ..policy import ResidencyError
from ..progress import Cancelled, Watch, watching
from . import bodies, transfer as copies
from .base import SplitHandler

#: the ended transfers kept for the list (the oldest go first); running ones are always kept
KEEP_ENDED = 50
#: copies running at once on this server; one more waits for one to end (a 429 says so)
MAX_RUNNING = 8
TRANSFER_ID = r"(?P<transfer_id>[0-9a-f]{16})"
STATES = ("running", "succeeded", "failed", "refused", "cancelled")


@dataclass
class Transfer:
    """One watched copy of `site:name` to `to_site`."""

    site: str
    name: str
    to_site: str
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    state: str = "running"
    message: str = ""
    started: float = field(default_factory=time.time)
    ended: float | None = None
    watch: Watch = field(default_factory=Watch)

    def view(self) -> dict[str, Any]:
        """The transfer as the sidebar shows it: who, what, its state and its bytes, rate and time left."""
        progress = self.watch.view()
        if self.state != "running":
            progress["eta_s"] = None
        return {"id": self.id, "site": self.site, "name": self.name, "to_site": self.to_site, "state": self.state,
                "message": self.message, "started": self.started, "ended": self.ended,
                "cancelling": self.state == "running" and self.watch.cancelled.is_set(), **progress}


class Busy(ValueError):
    """A transfer that cannot start now: the same copy is under way, or `MAX_RUNNING` copies are."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Transfers:
    """This server's transfers: each copy in a thread of its own, the running ones and the last ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: OrderedDict[str, Transfer] = OrderedDict()

    def start(self, config: Config, site: str, name: str, to_site: str) -> Transfer:
        """Begin the copy in the background; ConfigError or ValueError at once for sites it cannot go between,
        Busy where the same copy is under way (two would stage the same files) or too many are."""
        copies.check_sites(config, site, to_site, name)
        job = Transfer(site, name, to_site)
        with self._lock:
            running = [t for t in self._all.values() if t.state == "running"]
            same = next((t for t in running if (t.site, t.name, t.to_site) == (site, name, to_site)), None)
            if same is not None:
                raise Busy(f"{site}:{name} is already being copied to site {to_site!r} (transfer {same.id}); "
                           "wait for it, or cancel it first", 409)
            if len(running) >= MAX_RUNNING:
                raise Busy(f"{len(running)} copies are running on this server, the most at once; wait for one "
                           "to end, or cancel one", 429)
            self._all[job.id] = job
            ended = [key for key, t in self._all.items() if t.state != "running"]
            for key in ended[:max(0, len(ended) - KEEP_ENDED)]:
                del self._all[key]
        threading.Thread(target=self._run, args=(job, config), name=f"transfer-{job.id}", daemon=True).start()
        return job

    def list(self) -> list[Transfer]:
        """Every kept transfer, the newest first."""
        with self._lock:
            return list(reversed(self._all.values()))

    def get(self, transfer_id: str) -> Transfer | None:
        """The transfer of that id, if this server still keeps it."""
        with self._lock:
            return self._all.get(transfer_id)

    @staticmethod
    def _run(job: Transfer, config: Config) -> None:
        where = f"{job.site}:{job.name} to site {job.to_site!r}"
        try:
            with watching(job.watch):
                report = copies.copy_to_site(config, job.site, job.name, job.to_site)
            state, message = "succeeded", str(report)
        except Cancelled:
            seen = job.watch.view()
            state = "cancelled"
            message = (f"the copy of {where} was cancelled after {seen['bytes_done']:,} of {seen['bytes_total']:,} bytes; "
                       f"what site {job.to_site!r} had published is as it was, and a new copy resumes where this one stopped")
        except ResidencyError as exc:
            state, message = "refused", str(exc)
        except (SplitError, ValueError, OSError) as exc:  # SyncError and ConfigError are SplitErrors
            state, message = "failed", f"the copy of {where} failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - the thread has no caller: the list is where it is said
            state, message = "failed", f"the copy of {where} failed: {type(exc).__name__}: {exc}"
        job.state, job.message, job.ended = state, message, time.time()


TRANSFERS = Transfers()


class TransfersHandler(SplitHandler):
    """GET /jupyter-split/transfers: this server's transfers; POST: start one."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {transfers: [...]}, the newest first, each as `Transfer.view` makes it, and {states}."""
        self.send({"transfers": [t.view() for t in TRANSFERS.list()], "states": list(STATES)})

    @tornado.web.authenticated
    async def post(self) -> None:
        """Takes {site, name, to_site} as POST /checkpoints/transfer does; answers 202 with the new transfer.
        An unknown site, or a copy to the site it is on, is a 400 at once; the same copy under way a 409, and
        `MAX_RUNNING` copies under way a 429; anything found later (a missing checkpoint, the guard's refusal,
        a failure on the way) is the transfer's state and message."""
        body = self.body(bodies.Transfer)
        split = await self.call(core.get_split)
        try:
            job = TRANSFERS.start(split.config, body.site, body.name, body.to_site)
        except Busy as exc:
            raise tornado.web.HTTPError(exc.status, str(exc)) from None
        except (SplitError, ValueError) as exc:
            raise tornado.web.HTTPError(400, f"copy of {body.site}:{body.name} to site {body.to_site!r} not started: "
                                             f"{exc}") from None
        self.set_status(202)
        self.send(job.view())


class TransferCancelHandler(SplitHandler):
    """POST /jupyter-split/transfers/ID/cancel: stop a running transfer at its next bytes sent."""

    @tornado.web.authenticated
    async def post(self, transfer_id: str) -> None:
        """Answers the transfer (`cancelling` true until its copy stops); 404 for an id this server does
        not keep, 409 for a transfer that already ended."""
        job = TRANSFERS.get(transfer_id)
        if job is None:
            raise tornado.web.HTTPError(404, f"no transfer {transfer_id!r} on this server: GET "
                                             "/jupyter-split/transfers lists them")
        if job.state != "running":
            raise tornado.web.HTTPError(409, f"transfer {transfer_id} already ended ({job.state}); nothing to cancel")
        job.watch.cancel()
        self.send(job.view())


HANDLERS: list[tuple[str, type[SplitHandler]]] = [
    ("transfers", TransfersHandler),
    (f"transfers/{TRANSFER_ID}/cancel", TransferCancelHandler),
]
