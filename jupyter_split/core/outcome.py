"""What a face asks of a cell and what it gets back: the cell's options, how its run ended, and the
error a face raises for a cell that failed, shown as the notebook's own."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import SplitError
from ..names import check_name


@dataclass
class CellOptions:
    """How to run one cell: the parsed options of `%%on`, `%%remote_gpu` or `jupyter-split run`.

    `site` None means the config's default remote. A cell runs in the site's session runner unless it
    is `detach`ed, `fresh`, or asks for more than one GPU or node: those get a one-shot runner of their own.
    A `name` with a character a layer would misread raises NameRefused here: it becomes an environment
    variable of the runner.
    """

    site: str | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    gpus: int | None = None
    nodes: int | None = None
    detach: bool = False
    fresh: bool = False
    name: str | None = None
    timeout: float | None = None
    wandb: bool = False
    #: how the notebook shows this cell (`render.cell_view`): the runner shows its traceback the same way
    view: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # The name becomes an environment variable of the runner: a NUL there would kill the session.
        if self.name is not None:
            check_name("--name", self.name)


@dataclass
class RunOutcome:
    """How a run ended, as `Split.execute` and `Split.attach` return it.

    `state` is one of `protocol.RUN_STATES` (`submitted` for a detached run). `reason` and `error`
    (the cell's `error` record: ename, evalue, traceback) say why one did not succeed; `outputs` names the
    --out variables put into the namespace. A cell that raised is an outcome, not an exception: the faces
    raise `RemoteError(outcome)` themselves.
    """

    run_id: str
    site: str
    state: str
    reason: str | None = None
    error: dict[str, Any] | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing went wrong: the run succeeded, or was submitted detached and not waited for."""
        return self.state in ("succeeded", "submitted")


class RemoteError(SplitError, RuntimeError):
    """A cell that did not succeed; IPython shows the remote traceback through `_render_traceback_`.

    Where the cell raised, the error is of a subclass named as the cell's exception, with its
    message: the notebook records `ename` ZeroDivisionError, not RemoteError, as if it ran here.
    """

    as_message = False  # the cell's own traceback shows it

    def __new__(cls, outcome: RunOutcome):
        ename = (outcome.error or {}).get("ename") or ""
        if cls is RemoteError and ename.isidentifier():
            cls = _named_remote_error(ename)
        return super().__new__(cls, outcome)

    def __init__(self, outcome: RunOutcome):
        self.outcome = outcome
        super().__init__(outcome.error.get("evalue", "") if outcome.error else
                         f"run {outcome.run_id} on site {outcome.site!r} {outcome.state}: {outcome.reason}")

    def _render_traceback_(self) -> list[str]:
        lines = list(self.outcome.error["traceback"]) if self.outcome.error else []
        reason = reason_to_show(self.outcome.reason, self.outcome.error)
        return lines + [f"[jupyter_split] run {self.outcome.run_id} on site {self.outcome.site!r}: "
                        f"{self.outcome.state}" + (f" ({reason})" if reason else "")]


@functools.lru_cache(maxsize=None)
def _named_remote_error(ename: str) -> type[RemoteError]:
    return type(ename, (RemoteError,), {"__module__": RemoteError.__module__, "__doc__": f"{ename}, raised by a remote cell."})


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def reason_to_show(reason: str | None, error: dict[str, Any] | None) -> str | None:
    """A run's reason, or None where the cell's traceback (shown above it) already says it."""
    shown = _ANSI.sub("", "\n".join(error["traceback"])) if error else ""
    return reason if reason and reason not in shown else None


class NotRunning(SplitError, ValueError):
    """A run that has no cell running to interrupt: it has ended, or it waits on a session behind another
    cell (where a signal would reach the cell that runs, not this one). The message says what to do."""

    http_status, http_reason = 409, "run not running"
