"""The one core under the magics, the CLI and the server: run cells on sites, attach, cancel, list.

Data flows one way: a face calls `Split.execute`, which reads the config, picks the
site's executor, starts or reuses a runner there, then follows the run's event log back
into a `deliver` callback and the run index.
"""
from __future__ import annotations

import asyncio
import json
import os
import posixpath
import secrets
from typing import Any, AsyncIterator, Callable, Iterator

from ..accelerators.usage import cards_held
from ..errors import SplitError
from .. import aio, policy, tracking, transfer
from . import channel, sessions
from ..config import Config, SiteConfig, load_config
from ..executors import Executor, LaunchSpec, executor_for
from . import logs, replay
from .follow import Tracker, follow, record_death
from .outcome import CellOptions, NotRunning, RunOutcome
from .sessions import end_runner
from ..protocol import rank_dir
from ..runs.events import TERMINAL_STATES, run_view
from ..runs.ids import new_run_id
from ..runs.index import RunIndex, RunRecord

Deliver = Callable[[dict[str, Any]], None]
#: how many of a log's last records `list_runs` reads to bring a run's row up to date
VIEW_RECORDS = 200
#: seconds between a kernel's interrupt and the remote cell's: jupyter_client begins every shutdown with an
#: interrupt, then kills the kernel or asks it to stop within milliseconds, and that interrupt is not the user's
SHUTDOWN_GRACE = 0.5


class Split:
    """Per process (a kernel, a CLI call, the server): the config, the run index, open executors.

    Every face calls these methods. Each blocks until done, driving the executors on the process's
    background loop (`jupyter_split.aio`); `get_split()` gives the process's shared one.
    """

    def __init__(self, config: Config | None = None, index: RunIndex | None = None):
        self.config = config or load_config()
        self.index = index or RunIndex()
        self._executors: dict[str, Executor] = {}
        self._versions: dict[str, dict[str, Any]] = {}
        self._sessions: dict[str, dict[str, Any]] = {}
        self._local_versions: dict[str, Any] | None = None
        self._parity_checked: dict[str, dict[str, Any]] = {}  # site -> the versions found compatible

    def executor(self, site: str | SiteConfig | None) -> Executor:
        """The open executor of a site (a name, a SiteConfig, or None for the default remote), made on first
        use and kept for this process. Raises ConfigError for an unknown site name."""
        site = site if isinstance(site, SiteConfig) else self.config.site(site)
        if site.name not in self._executors:
            self._executors[site.name] = executor_for(site, self.config)
        return self._executors[site.name]

    # ---- running cells
    def execute(self, code: str, opts: CellOptions, namespace: dict[str, Any] | None, deliver: Deliver,
                closing: Callable[[], bool] | None = None) -> RunOutcome:
        """Run `code` on `opts.site`; the notebook's stop button interrupts the remote cell.

        `closing` tells whether the face's process is being stopped: a notebook kernel's shutdown (a restart,
        or a kill) begins with an interrupt that is not the user's, so a face that gives `closing` has the
        remote cell interrupted `SHUTDOWN_GRACE` seconds after the interrupt, and only if by then it is not
        closing (and still alive): the run goes on, for `%split attach` from the next kernel.

        Each record of the run's event log goes to `deliver` as it comes. Before anything starts, the
        residency guard checks the cell and its --in variables (ResidencyError), and variables travel only
        between matching python, cloudpickle and torch (VersionMismatch). Returns the `RunOutcome`: a cell
        that raised is an outcome, not an exception. --out variables land in `namespace` only when the cell
        succeeded and `namespace` is given. With `opts.detach` it returns at once, state `submitted`.
        """
        started: dict[str, Any] = {}

        def on_interrupt(count: int) -> None:
            if "record" not in started:
                return  # nothing runs yet to interrupt (and a launch stopped midway could leave a runner unknown)
            run_id = started["record"].run_id
            if count > 1:  # a second press stops waiting; the run goes on and can be attached
                raise KeyboardInterrupt(f"stopped waiting for run {run_id}, which goes on: `%split attach {run_id}` "
                                        f"(`jupyter-split attach {run_id}`) follows it again, `%split cancel "
                                        f"{run_id}` ends it") from None
            if closing is None:
                aio.submit(self._signal(started["record"], "INT"))
            else:
                aio.submit(self._interrupt_unless(closing, started["record"]))

        return aio.run(self._execute(code, opts, namespace, deliver, started), on_interrupt)

    async def _execute(self, code: str, opts: CellOptions, namespace: dict[str, Any] | None,
                       deliver: Deliver, started: dict[str, Any]) -> RunOutcome:
        site = self.config.site(opts.site)
        if opts.inputs:  # the residency guard, before anything starts or is pickled
            given = namespace or {}
            policy.check_objects({n: given[n] for n in opts.inputs if n in given}, site, config=self.config)
        policy.check_cell(code, [opts.name or "", *opts.outputs], site, config=self.config)
        ex = self.executor(site)
        run_id = new_run_id(self.config.experiment.name, site.name)
        run_dir = ex.path("runs", run_id)
        session = ex.supports_sessions and not (opts.detach or opts.fresh or (opts.gpus or 0) > 1 or (opts.nodes or 0) > 1)
        handle = await sessions.open_session(self, ex) if session else None
        payload = None
        if opts.inputs or opts.outputs:
            await self._check_parity(ex)
        piped = False  # the --in data goes to the session over its socket
        if opts.inputs:
            payload = transfer.pack(opts.inputs, namespace or {}, "in this notebook")
            policy.check_variables_content(  # the content scan, on the very bytes that would go
                {n: (namespace or {})[n] for n in opts.inputs}, payload, site,
                pack=lambda names: transfer.pack(names, namespace or {}, "in this notebook"), config=self.config)
            wide = await ex.wide_above()
            piped = session and (wide is None or len(payload) <= wide)
            if not piped:  # the runner reads it from its run directory (a big one came over the wide path)
                await channel.write_payload(ex, posixpath.join(run_dir, "in.pkl"), payload)
        request = {"run_id": run_id, "code": code, "out": opts.outputs, "timeout": opts.timeout, "name": opts.name,
                   "has_in": payload is not None, "site": site.name, "wandb": opts.wandb, "view": opts.view,
                   # the run holds the --in variables: their labels (and this kernel's taint) taint it
                   "labels": policy.carried_labels({n: (namespace or {})[n] for n in opts.inputs}, site.jurisdiction)
                   if payload else {},
                   "env": {**self._site_env(site, run_id), **tracking.runner_env(self.config, site, run_id, opts.name, run_dir),
                           **policy.runner_env(self.config)}}
        live = None
        if session:
            handle, live = await sessions.submit(self, ex, handle, run_dir, request, payload if piped else None)
        else:
            await ex.write_file(posixpath.join(run_dir, "request.json"), json.dumps(request).encode())
            sock = ex.socket_path(run_id[-6:] + secrets.token_hex(2))
            spec = LaunchSpec(run_id, run_dir, ["--run-dir", run_dir, "--socket", sock, "--stdin-json"],
                              stdin=self._stdin(site), gpus=opts.gpus, nodes=opts.nodes, name=opts.name)
            handle = {**await ex.launch(spec), "sock": sock}
        record = RunRecord(run_id, site.name, run_dir, "session" if session else "detached", state="running",
                           name=opts.name, out_vars=opts.outputs,  # the cards held: for the lease's hours
                           handle={**handle, "cards": cards_held(site, opts.gpus, opts.nodes), **_notebook()})
        self.index.add(record)
        started["record"] = record
        if opts.detach:
            return RunOutcome(run_id, site.name, "submitted")
        return await self._follow(ex, record, 0, namespace, deliver, live)

    async def _follow(self, ex: Executor, record: RunRecord, after: int,
                      namespace: dict[str, Any] | None, deliver: Deliver, live: Any = None) -> RunOutcome:
        tracker = Tracker(self.index, record, deliver)
        final = await follow(ex, record.handle, record.run_dir, after, tracker, tracker.flush, live)
        tracker.save(state=final["state"])
        outcome = RunOutcome(record.run_id, record.site, final["state"], final.get("reason"), tracker.error)
        if final["state"] == "succeeded" and record.out_vars and namespace is not None:
            data = await channel.output(ex, record)
            await self._check_parity(ex)  # a no-op where this process checked the site already
            values = transfer.unpack(data)
            policy.receive_outputs(values, await self._out_labels(ex, record.run_dir))
            namespace.update(values)
            outcome.outputs = list(record.out_vars)
            self.index.update(record.run_id, delivered=1)
        return outcome

    async def _out_labels(self, ex: Executor, run_dir: str) -> dict[str, dict[str, str]]:
        """The residency labels the runner reported for each --out variable."""
        try:
            return json.loads(await ex.read_file(posixpath.join(run_dir, "out.labels.json")))
        except FileNotFoundError:
            return {}

    def _stdin(self, site: SiteConfig) -> bytes:
        """Secrets and the config: they reach the runner over this channel only."""
        payload = {"env": tracking.runner_secrets(site), "config": self.config.model_dump(mode="json"),
                   "site": site.name, "accelerator": site.accelerator}
        return json.dumps(payload).encode() + b"\n"

    def _site_env(self, site: SiteConfig, run_id: str) -> dict[str, str]:
        return {"JUPYTER_SPLIT_SITE": site.name, "JUPYTER_SPLIT_RUN_ID": run_id,
                "JUPYTER_SPLIT_EXPERIMENT": self.config.experiment.name, "JUPYTER_SPLIT_JURISDICTION": site.jurisdiction}

    async def _check_parity(self, ex: Executor) -> None:
        """Refuse to ship pickles to or from a site whose python, cloudpickle or torch differ from
        this process's: checked once per site and versions seen (a mismatch raises, so is never kept)."""
        name = ex.site.name
        if name not in self._versions:  # a session's `hello` gives them too (the runner's own)
            self._versions[name] = await ex.probe()
        if self._local_versions is None:
            from ..protocol import versions
            self._local_versions = versions()
        if self._parity_checked.get(name) is not self._versions[name]:
            transfer.check_parity(self._local_versions, self._versions[name], name)
            self._parity_checked[name] = self._versions[name]

    # ---- runs after the fact
    def attach(self, run_id: str, deliver: Deliver, namespace: dict[str, Any] | None, from_start: bool = True,
               tail: int | None = None) -> RunOutcome:
        """Follow a run started earlier (by this or another process on this machine) until it ends.

        `from_start` replays its log from the first record; False goes on after the last record the index
        saw; `tail` N starts N lines before the log's end (`lines.last_lines`), found by reading back from
        it. --out variables land in `namespace` as for `execute`. The stop button stops the waiting, not the run. Raises
        UnknownRun where no run, or more than one, has an id containing `run_id`.
        """
        record = self.index.get(run_id)
        ex = self.executor(record.site)

        # the records that show the last lines, the first one cut to them: delivered first, then on from there
        kept = logs.tail_lines(record, ex, tail) if tail else []

        async def attach() -> RunOutcome:
            after = 0 if from_start else record.last_seq
            if kept:
                after = kept[0]["seq"] - 1
            elif tail is not None:
                last = await replay.tail(ex, record.run_dir, 1)
                after = last[-1]["seq"] if last else 0
            return await self._follow(ex, record, after, namespace, deliver, _once(kept) if kept else None)

        return aio.run(attach())

    def run_events(self, run_id: str, after: int = 0, rank: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """A run's records after `after`, at most `limit` of them (None: to the end); `rank` K > 0: that
        rank's own log in a distributed run. Read from near `after` (the log's index), so a caller that
        asks again after the last `seq` it got walks a long log in bounded memory."""
        record = self.index.get(run_id)
        ex = self.executor(record.site)

        async def collect() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            async for event in replay.stream(ex, rank_dir(record.run_dir, rank), after):
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
            return found

        return aio.run(collect())

    def iter_run_events(self, run_id: str, after: int = 0, rank: int = 0) -> Iterator[list[dict[str, Any]]]:
        """A run's records after `after` to its log's end, a chunk at a time (then the record kept
        beside a log with no final one): one pass over the log, in the memory of one chunk."""
        return logs.chunks(*logs.open_log(run_id, self.executor, self.index), after, rank)

    def run_tail(self, run_id: str, count: int, rank: int = 0) -> list[dict[str, Any]]:
        """A run's last `count` records, read back from its log's end (not from its start)."""
        return logs.tail(*logs.open_log(run_id, self.executor, self.index), count, rank)

    def run_tail_lines(self, run_id: str, lines: int, rank: int = 0) -> list[dict[str, Any]]:
        """A run's records that show its last `lines` lines (the first one cut to them), read back from
        its log's end: what `logs --tail` prints and the sidebar's run panel opens on."""
        return logs.tail_lines(*logs.open_log(run_id, self.executor, self.index), lines, rank)

    def list_runs(self, site: str | None = None, limit: int = 50, before: float | None = None,
                  **filters: str | None) -> list[RunRecord]:
        """Recent runs, newest first (`filters`: `RunIndex.list`'s state, text and notebook); `before`, those
        created before it (a page further back: the `created` of the last row of the page before); those the
        index still calls active are brought up to date from their logs.

        A site that cannot be reached leaves its rows as they were, rather than failing the list.
        """
        # a row the index still calls active may have ended: brought up to date before a state is matched
        scope = {**filters, "state": None} if filters.get("state") else filters
        stale = [r for r in self.index.list(site, limit, before=before, **scope) if r.state not in TERMINAL_STATES]
        if stale:
            aio.run(self._refresh_all(stale))
        rows = self.index.list(site, limit, before=before, **filters)
        # a run added meanwhile is as its client wrote it (a cell queued on a busy session said `running`)
        late = [r for r in rows if r.state not in TERMINAL_STATES and r.run_id not in {s.run_id for s in stale}]
        if late:
            aio.run(self._refresh_all(late))
            rows = self.index.list(site, limit, before=before, **filters)
        return rows

    async def _refresh_all(self, records: list[RunRecord]) -> None:
        # A site that cannot be reached leaves its rows as they were; the others still update.
        await asyncio.gather(*(self._refresh(r) for r in records), return_exceptions=True)

    async def _refresh(self, record: RunRecord) -> None:
        """Catch the index up with a run nobody is following (detached, or its kernel died)."""
        ex = self.executor(record.site)
        # the log's last records say its state and last line: a long log is not read from its start
        view = run_view(await replay.tail(ex, record.run_dir, VIEW_RECORDS), record.state)
        if view.state not in TERMINAL_STATES and not await ex.alive(record.handle):
            view.add(await record_death(ex, record.handle, record.run_dir, view.seq))
        self.index.update(record.run_id, state=view.state, last_seq=view.seq, last_line=view.last_line)

    def cancel(self, run_id: str) -> str:
        """End a run (and, for a session run, its session); returns the final state.

        A cell still queued on a session is taken out of the queue: the cell the session runs, its
        variables and the other queued cells go on. Otherwise SIGTERM first, SIGKILL after
        `sessions.CANCEL_GRACE` seconds. A run that has already ended is left alone.
        """
        record = self.index.get(run_id)
        if record.state in TERMINAL_STATES:
            return record.state
        if record.mode == "session" and record.handle.get("sock") and \
                run_view(self.run_tail(record.run_id, VIEW_RECORDS), record.state).state in ("submitted", "queued"):
            if aio.run(self._drop(record)):
                self.index.update(record.run_id, state="cancelled")
                return "cancelled"
        return aio.run(self._cancel(record))

    async def _drop(self, record: RunRecord) -> bool:
        # the session takes the cell out of its queue, unless it started meanwhile (then it is ended as a run)
        try:
            reply = await channel.request(self.executor(record.site), record.handle["sock"],
                                          {"op": "drop", "run_dir": record.run_dir})
        except (OSError, SplitError):
            return False  # the session is out of reach: ending it is what is left
        return bool(reply.get("ok") and reply.get("dropped"))

    async def _cancel(self, record: RunRecord) -> str:
        ex = self.executor(record.site)

        async def cancelled() -> dict[str, Any]:
            # before a SIGKILL too: a notebook following the run then finds `cancelled` when the runner
            # dies, not a death (`failed`) it records itself first; a final status the runner wrote wins
            return await record_death(ex, record.handle, record.run_dir, record.last_seq, state="cancelled",
                                      how="was cancelled, and killed after it ignored SIGTERM")

        await end_runner(ex, record.handle, before_kill=cancelled)
        if record.mode == "session":
            self.index.set_session(record.site, None)
        final = await cancelled()
        self.index.update(record.run_id, state=final["state"])
        return final["state"]

    def interrupt(self, run_id: str) -> str:
        """Send SIGINT to a run's runner: the cell gets a KeyboardInterrupt (the run ends `interrupted`, as a
        notebook's stop button ends it) and a session lives on, its variables kept. On Ray this ends the whole
        job (its Jobs API can only stop jobs). Returns the state its log's end gave when the signal went.

        Raises NotRunning for a run whose log says it ended, and for a cell queued on a session: the signal
        goes to the session's runner, so it would stop the cell the session executes, not this one.
        """
        record = self.index.get(run_id)
        state = run_view(self.run_tail(record.run_id, VIEW_RECORDS), record.state).state
        if state in TERMINAL_STATES:
            raise NotRunning(f"run {record.run_id} has ended ({state}): there is no cell to interrupt")
        if record.mode == "session" and state in ("submitted", "queued"):
            raise NotRunning(f"run {record.run_id} waits on the session of site {record.site!r} behind another cell; "
                             "an interrupt now would stop that cell, not this one. Interrupt it once it runs, or "
                             f"cancel it (`%split cancel {record.run_id}` takes it out of the queue; the session goes on)")
        aio.run(self._signal(record, "INT"))
        return state

    async def _interrupt_unless(self, closing: Callable[[], bool], record: RunRecord) -> None:
        await asyncio.sleep(SHUTDOWN_GRACE)
        if not closing():
            await self._signal(record, "INT")

    async def _signal(self, record: RunRecord, sig: str) -> None:
        await self.executor(record.site).signal(record.handle, sig)

    # ---- sites
    def sites(self) -> list[dict[str, Any]]:
        """One row per configured site, for `%split sites` and the sidebar (`core.sites.rows`)."""
        from .sites import rows

        return aio.run(rows(self))

    def doctor(self, site: str | None) -> dict[str, Any]:
        """For `%split doctor`: the site's python, workdir and versions beside this process's, and
        `parity` (`core.sites.doctor`). Raises where the site cannot be reached."""
        from .sites import doctor

        return doctor(self, site)


_default: Split | None = None


async def _once(events: list[dict[str, Any]]) -> AsyncIterator[list[dict[str, Any]]]:
    """`events` as one batch, for `follow` to deliver before it reads on from the log."""
    yield events


def _notebook() -> dict[str, str]:
    """{"notebook": path} where this process is a notebook's kernel: jupyter_server gives a kernel the
    path of its notebook (`JPY_SESSION_NAME`), so the sidebar can show and filter runs by notebook."""
    path = os.environ.get("JPY_SESSION_NAME")
    return {"notebook": path} if path else {}


def get_split() -> Split:
    """The process's core, made on first use from the config lookup."""
    global _default
    if _default is None:
        _default = Split()
    return _default


def reset() -> None:
    """Forget the process's core (after the config changed)."""
    global _default
    _default = None
