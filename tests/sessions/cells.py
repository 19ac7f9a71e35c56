"""Cells run on a site's session by clients of their own, and waiting for a session's report: shared by
the sessions' tests here and the server's."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from jupyter_split import core
from jupyter_split.core import sessions
from jupyter_split.core.outcome import CellOptions


class Cell(threading.Thread):
    """A cell run on a site's session to its end, by a client of its own (a `Split` from `make`, as
    another notebook's kernel has its own), started at once."""

    def __init__(self, code: str, site: str = "home", make: Callable[[], core.Split] = core.Split):
        super().__init__(daemon=True)
        self.code, self.site, self.make, self.outcome, self.text = code, site, make, None, ""
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.outcome = self.make().execute(self.code, CellOptions(site=self.site), {}, self.deliver)
        except BaseException as exc:  # kept for `result` to show: a thread's exception reaches no test
            self.error = exc
            raise

    def deliver(self, event: dict[str, Any]) -> None:
        if event["type"] == "stream":
            self.text += event["text"]

    def result(self, timeout: float = 300) -> Any:
        """The cell's outcome, once it has ended."""
        self.join(timeout)
        assert not self.is_alive(), f"the cell {self.code!r} did not end"
        assert self.error is None, f"the cell {self.code!r} raised {self.error!r}"
        return self.outcome


def until(split: core.Split, site: str, check: Callable[[dict[str, Any]], bool], what: str,
          timeout: float = 180) -> dict[str, Any]:
    """The site's session report, once `check` holds for it. The bound is generous: a session that a cell
    starts takes the runner's imports, slow on a loaded machine (the session's own bound is 120 s)."""
    deadline = time.monotonic() + timeout
    while True:
        row = sessions.sessions(split, site)["sites"][0]
        if check(row):
            return row
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {row}"
        time.sleep(0.1)
