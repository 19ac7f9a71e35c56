"""The sessions pane's REST: every site's session (state, the run it executes, the cells queued on it,
uptime and memory), and its stop and restart actions; thin over `core.sessions`.

GET answers carry an ETag (tornado's, of the answer's bytes): a poll sending it back as `If-None-Match`
gets a 304 while nothing changed. The answer holds when a session started, not its uptime, so an idle
session's answer stays the same from poll to poll.
"""
from __future__ import annotations

import tornado.web

from .. import core
from ..core import sessions
from ..names import check_name
from . import bodies
from .base import SplitHandler

#: the longest site name a path may hold (the config's rule)
SITE_MAX = 200


class SessionsHandler(SplitHandler):
    """GET /jupyter-split/sessions?site=: every site's session, or one site's."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {states, sites}: the session states in order (`core.sessions.SESSION_STATES`) and per site
        {site, executor, supported, state, session, pid, started, memory, running, queue, errors}
        (`core.sessions.sessions`; each cell of `running` and `queue` with the notebook it came from). 400 for a site name that is malformed or not in the config."""
        site = self.site_arg()
        split = await self.call(core.get_split)
        self.send(await self.call(sessions.sessions, split, site))


class SessionActionHandler(SplitHandler):
    """POST /jupyter-split/sessions/SITE/stop (and `SessionRestartHandler`'s .../restart): act on a site's session."""

    action = "stop"

    @tornado.web.authenticated
    async def post(self, site: str) -> None:
        """Takes an empty body or {}; the sidebar asks the user first. `stop` answers {site, stopped, cancelled:
        [{run_id, state}], message}: the run the session executed and the cells queued on it end `cancelled`.
        `restart` answers the same with `session`, the new session's report. 400 for an unknown site, or one
        whose executor has no sessions (Slurm, Ray); 502 where the new session does not start."""
        self.body(bodies.Empty)
        if len(site) > SITE_MAX:
            raise tornado.web.HTTPError(400, f"{site[:40]!r}... is not a site name: {len(site)} characters, "
                                             f"at most {SITE_MAX}")
        await self.call(check_name, "a site name", site)
        split = await self.call(core.get_split)
        act = sessions.restart if self.action == "restart" else sessions.stop
        self.send(await self.call(act, split, site))


class SessionRestartHandler(SessionActionHandler):
    """POST /jupyter-split/sessions/SITE/restart: stop a site's session, then start a fresh one."""

    action = "restart"
    post = SessionActionHandler.post  # its own attribute: the route test finds every handler's methods in its class


#: the site in an action's path: anything up to the next `/`, checked by the handler (a 400 that says why)
SITE = r"(?P<site>[^/]+)"

HANDLERS: list[tuple[str, type[SplitHandler]]] = [
    ("sessions", SessionsHandler),
    (f"sessions/{SITE}/stop", SessionActionHandler),
    (f"sessions/{SITE}/restart", SessionRestartHandler),
]
