"""Each site's session as the faces show it, and the two things a user does to one: stop and restart.

The one definition under `%split session`, `jupyter-split session` and the sidebar's
`/jupyter-split/sessions`. A session's state comes from its runner (alive, answering `hello`),
the run it executes and the cells queued on it from the run index (every notebook on this
machine shares it) and each run's event log, its memory from the runner's /proc status on the
site (over an ssh site's existing connection: no new login, no process started there).

Stopping a session cancels the run it executes and every cell queued on it, as restarting a
Jupyter kernel drops the cells waiting for it: a queued cell was written for the namespace the
stop throws away. Each of those runs ends `cancelled`, never `failed`.
"""
from __future__ import annotations

import asyncio
import json
import posixpath
import re
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .. import aio
from ..accelerators.poll import active_runs
from ..accelerators.probe import run_script
from ..errors import SplitError
from ..executors.base import Executor, ExecutorError, LaunchSpec
from . import channel, replay
from .follow import record_death

if TYPE_CHECKING:
    from .. import transfer
    from ..config import SiteConfig
    from ..runs.index import RunRecord
    from .split import Split

#: what a site's session can be: idle with its namespace (warm), executing a cell (busy), started but
#: not answering yet (starting), or not running (gone). The sidebar takes them from the answer.
SESSION_STATES = ("warm", "busy", "starting", "gone")
#: seconds a new session has to answer `hello`
SESSION_START_TIMEOUT = 120.0
#: seconds a runner has to end after SIGTERM before it gets SIGKILL
CANCEL_GRACE = 10.0
#: seconds one site's report may take before it says so (a site that does not answer)
REPORT_TIMEOUT = 30.0
#: a queued cell is shown by the first line of its code, cut to this many characters
CELL_CHARS = 80

# sites whose session this process is starting (a restart): asked meanwhile, they are `starting`
_starting: dict[str, float] = {}
_starting_lock = threading.Lock()


class SessionError(SplitError, ValueError):
    """A session action a site cannot take (its executor has no sessions); the message says what it can."""

    http_status, http_reason = 400, "no session on this site"


def sessions(split: "Split", site: str | None = None) -> dict[str, Any]:
    """{states, sites}: `SESSION_STATES`, and a report (`report`) of the session of `site`, or of every
    site where None. Raises ConfigError for an unknown site; a site that cannot be reached is a report
    with `errors`, not an exception."""
    chosen = [split.config.site(site)] if site else list(split.config.sites.values())

    async def every() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(_report_or_error(split, s) for s in chosen)))

    return {"states": list(SESSION_STATES), "sites": aio.run(every())}


def stop(split: "Split", site: str) -> dict[str, Any]:
    """Stop `site`'s session: SIGTERM (SIGKILL after `CANCEL_GRACE` s), the run it executes and the cells
    queued on it cancelled. Returns {site, stopped, cancelled: [{run_id, state}], message}; a site with no
    session running is `stopped: False`, not an error. Raises ConfigError for an unknown site and
    SessionError for a site whose executor has no sessions."""
    return aio.run(_stop(split, split.config.site(site)))


def restart(split: "Split", site: str) -> dict[str, Any]:
    """Stop `site`'s session (as `stop`), then start a fresh one and wait until it answers. Returns
    `stop`'s answer with `session`: the new session's report. Raises as `stop` does, and ExecutorError
    where the new session does not start (the message holds its runner's output)."""
    return aio.run(_restart(split, split.config.site(site)))


async def _restart(split: "Split", site: "SiteConfig") -> dict[str, Any]:
    answer = await _stop(split, site)
    with _starting_lock:
        _starting[site.name] = time.time()
    try:
        # `open_session` is the one place a session starts: the same one the next cell would get
        await open_session(split, split.executor(site))
    finally:
        with _starting_lock:
            _starting.pop(site.name, None)
    answer["session"] = await _report(split, site)
    if not answer["stopped"]:
        answer["message"] = f"site {site.name!r} had no session running"
    answer["message"] += f"; started a new session ({answer['session']['state']})"
    return answer


async def _stop(split: "Split", site: "SiteConfig") -> dict[str, Any]:
    ex = split.executor(site)
    if not ex.supports_sessions:
        raise SessionError(f"site {site.name!r} ({ex.kind}) runs each cell as a runner of its own, with no session to "
                           "stop or restart; `%split cancel RUN` ends one of its runs")
    handle = split.index.session(site.name)
    if not handle or not await ex.alive(handle):
        split.index.set_session(site.name, None)
        return {"site": site.name, "stopped": False, "cancelled": [],
                "message": f"site {site.name!r} has no session running"}
    runs = session_runs(split, site.name, handle)

    async def end_each() -> list[dict[str, Any]]:
        # The runner writes `cancelled` into each log it holds on SIGTERM. One that ignored it gets that
        # record here before SIGKILL (and again after, should its log have grown meanwhile): a notebook
        # following the run finds `cancelled` when the runner dies, never a `failed` of its own making.
        return [await record_death(ex, handle, r.run_dir, r.last_seq, state="cancelled",
                                   how="was stopped with its session") for r in runs]

    await end_runner(ex, handle, before_kill=end_each)
    split.index.set_session(site.name, None)
    cancelled = []
    for record, final in zip(runs, await end_each()):
        split.index.update(record.run_id, state=final["state"])
        if final["state"] == "cancelled":  # not one that had ended before (the index had not seen it yet)
            cancelled.append({"run_id": record.run_id, "state": final["state"]})
    return {"site": site.name, "stopped": True, "cancelled": cancelled,
            "message": f"stopped the session on site {site.name!r}" +
                       (f", cancelling {len(cancelled)} run(s)" if cancelled else "")}


async def end_runner(ex: Executor, handle: dict[str, Any], grace: float | None = None,
                     before_kill: Callable[[], Awaitable[Any]] | None = None) -> None:
    """SIGTERM to a runner's process group, then SIGKILL if it still lives `grace` seconds later
    (default `CANCEL_GRACE`), after awaiting `before_kill()`; returns once the runner is gone."""
    await ex.signal(handle, "TERM")
    deadline = time.monotonic() + (CANCEL_GRACE if grace is None else grace)
    while await ex.alive(handle) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if await ex.alive(handle):
        if before_kill is not None:
            await before_kill()
        await ex.signal(handle, "KILL")
        while await ex.alive(handle):  # SIGKILL cannot be caught: this wait is short
            await asyncio.sleep(0.05)


def session_runs(split: "Split", site: str, handle: dict[str, Any]) -> list["RunRecord"]:
    """The runs the index does not know to have ended that were given to the session behind `handle`,
    oldest first (the order the session takes them in)."""
    mine = [r for r in active_runs(split, site) if r.mode == "session"
            and r.handle.get("session") == handle.get("session") and r.handle.get("pid") == handle.get("pid")]
    return sorted(mine, key=lambda r: r.created)


async def _report_or_error(split: "Split", site: "SiteConfig") -> dict[str, Any]:
    try:
        return await asyncio.wait_for(_report(split, site), REPORT_TIMEOUT + site.connect_timeout)
    except (OSError, SplitError, asyncio.TimeoutError) as exc:
        row = _empty(site.name, site.executor)
        row["errors"].append(f"site {site.name!r}: {exc or type(exc).__name__}")
        return row


def _empty(site: str, executor: str) -> dict[str, Any]:
    return {"site": site, "executor": executor, "supported": True, "state": "gone", "session": None, "pid": None,
            "started": None, "memory": None, "running": None, "queue": [], "errors": []}


async def _report(split: "Split", site: "SiteConfig") -> dict[str, Any]:
    """The report of one site's session: {site, executor, supported, state, session, pid, started, memory,
    running, queue, errors}. `started` is when the session began (seconds since the epoch, as this
    machine's clock read it: uptime is now less that), `memory` its runner's resident bytes, `running`
    the run it executes and `queue` the runs waiting for it (each {run_id, name, state, created, count,
    cell, notebook}: `notebook` the one its cell came from, as its kernel was told, or None)."""
    ex = split.executor(site)
    row = _empty(site.name, ex.kind)
    row["supported"] = ex.supports_sessions
    handle = split.index.session(site.name)
    if site.name in _starting:
        row["state"] = "starting"
    if not handle or not await ex.alive(handle):
        return row
    row.update(session=handle.get("session"), pid=handle.get("pid"), started=handle.get("started"))
    try:
        await asyncio.wait_for(channel.request(ex, handle["sock"], {"op": "hello"}), site.connect_timeout)
    except (OSError, ValueError, asyncio.TimeoutError):
        row["state"] = "starting"  # alive, not answering yet (or a stopping one that no longer listens)
    row["memory"] = await _memory(ex, int(handle["pid"]))
    found = await asyncio.gather(*(_run_row(ex, r) for r in session_runs(split, site.name, handle)))
    row["running"] = next((run for run, _ in found if run["state"] == "running"), None)
    waiting = [(run, taken) for run, taken in found if run["state"] in ("queued", "submitted")]
    # in the order the session took them (its clock, under its lock), then those it has not taken yet
    row["queue"] = [run for run, _ in sorted(waiting, key=lambda p: (p[1] is None, p[1] or p[0]["created"]))]
    if row["state"] != "starting":
        row["state"] = "busy" if row["running"] else "warm"
    return row


async def _memory(ex: Executor, pid: int) -> int | None:
    """The resident bytes of process `pid` on the site: `VmRSS` of its /proc status, read over an ssh site's
    SFTP (no process started there: a fork and a shell cost a busy login node more than the read) or here
    for a local site; `ps` where there is no /proc (macOS). None where the process is gone."""
    path = f"/proc/{int(pid)}/status"
    try:
        status = await (ex.connection.read_pseudo(path) if ex.kind == "ssh" else asyncio.to_thread(Path(path).read_bytes))
    except OSError:
        status = b""
    found = re.search(rb"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if found:
        return int(found.group(1)) * 1024
    code, out, _ = await run_script(ex, f"ps -o rss= -p {int(pid)}")
    return int(out.strip()) * 1024 if code == 0 and out.strip().isdigit() else None


async def _run_row(ex: Executor, record: "RunRecord") -> tuple[dict[str, Any], float | None]:
    """A run given to a session as the report shows it (its state from its log's last record), and when
    the session took it (None: not yet, or no longer queued)."""
    last = await replay.tail(ex, record.run_dir, 1)
    if not last:
        state = "submitted"  # its request is written, the session has not taken it yet
    elif last[-1]["type"] == "status" and last[-1]["state"] == "queued" or last[-1].get("final"):
        state = last[-1]["state"]
    else:
        state = "running"  # any record after `queued` is the cell's: it has begun
    count, cell = None, ""
    try:
        request = json.loads(await ex.read_file(posixpath.join(record.run_dir, "request.json")))
        count = (request.get("view") or {}).get("count")
        cell = next((line.strip() for line in request.get("code", "").splitlines() if line.strip()), "")[:CELL_CHARS]
    except (FileNotFoundError, ValueError):
        pass
    row = {"run_id": record.run_id, "name": record.name, "state": state, "created": record.created,
           "count": count, "cell": cell, "notebook": record.handle.get("notebook")}
    return row, last[-1]["t"] if state == "queued" else None


async def open_session(split: "Split", ex: Executor) -> dict[str, Any]:
    """The site's session for a cell: the one this process knows (no round trip while a channel to it is
    open), else the one in the run index if it answers, else a new one, started and waited for.
    Raises ExecutorError where a new one does not start."""
    handle = split._sessions.get(ex.site.name)
    if handle and handle == split.index.session(ex.site.name) and (ex.reaches(handle["sock"]) or await ex.alive(handle)):
        return handle  # known good in this process (a channel to it open: no round trip)
    handle = split.index.session(ex.site.name)
    # one another client started (it is in the index from its launch on) is waited for while it starts,
    # not doubled by a second runner; one alive but silent past its start-up time is replaced
    if handle and await _hello(split, ex, handle, handle.get("started", 0) + SESSION_START_TIMEOUT):
        split._sessions[ex.site.name] = handle
        return handle
    sid = secrets.token_hex(4)
    sock = ex.socket_path(sid)
    spec = LaunchSpec(f"session-{sid}", ex.path("sessions", sid),
                      ["--session", ex.path("sessions", sid), "--socket", sock, "--stdin-json"], stdin=split._stdin(ex.site))
    handle = {**await ex.launch(spec), "sock": sock, "session": sid}
    split.index.set_session(ex.site.name, handle)  # every client sees it `starting` from here on
    if not await _hello(split, ex, handle, time.time() + SESSION_START_TIMEOUT):
        if split.index.session(ex.site.name) == handle:
            split.index.set_session(ex.site.name, None)
        raise ExecutorError(await _startup_failure(ex, spec.run_dir))
    split._sessions[ex.site.name] = handle
    return handle


async def _hello(split: "Split", ex: Executor, handle: dict[str, Any], until: float) -> bool:
    """Whether the session behind `handle` answers `hello` (its versions kept), asking again while it is
    alive and the clock is before `until` (seconds since the epoch)."""
    while await ex.alive(handle):
        try:
            split._versions[ex.site.name] = (await channel.request(ex, handle["sock"], {"op": "hello"}))["versions"]
            return True
        except OSError:
            if time.time() > until:
                return False
            await asyncio.sleep(0.05)
    return False


async def _startup_failure(ex: Executor, session_dir: str) -> str:
    try:
        log = (await ex.read_file(posixpath.join(session_dir, "runner.log"))).decode(errors="replace")
    except FileNotFoundError:
        log = ""
    tail = "\n".join(log.strip().splitlines()[-15:]) or "(no output)"
    return (f"the runner did not start on site {ex.site.name!r} (python: {ex.python}). Its output:\n{tail}\n"
            f"Run `%split doctor {ex.site.name}` to check the site's python and jupyter_split install.")


async def submit(split: "Split", ex: Executor, handle: dict[str, Any], run_dir: str, request: dict[str, Any],
                 payload: "transfer.Payload | None") -> tuple[dict[str, Any], Any]:
    """Send the cell (and its --in data, when it goes over the socket) to the session; returns the
    session's handle and the cell's records, coming on the same channel. A session that went away
    since it was last seen is asked again (or another started), and the cell sent to it once more."""
    async def send() -> Any:
        if payload is not None:
            await channel.put(ex, handle["sock"], run_dir, payload)
        return await channel.execute(ex, handle["sock"], run_dir, request)

    try:
        return handle, await send()
    except ExecutorError:
        raise
    except OSError:  # gone since it was last seen: ask again (or start another), then send once more
        split._sessions.pop(ex.site.name, None)
        handle = await open_session(split, ex)
    return handle, await send()
