"""Showing a run's events: in a notebook cell (rich) or on a terminal (text)."""
from __future__ import annotations

import sys
from typing import Any, TextIO

from ..core.split import reason_to_show


def cell_view(shell: Any, magic_line: str) -> dict[str, Any]:
    """How the notebook shows a cell magic's cell, for the runner to show its traceback the same
    way: the kernel's colours (`%colors`), the cell's number, and the magic's line above the body."""
    # prompt_count: the running cell's number in every IPython (9 counts execution_count up first)
    return {"colors": shell.colors, "count": shell.displayhook.prompt_count, "above": [magic_line]}


def terminal_view(stream: TextIO, file: str | None = None) -> dict[str, Any]:
    """A file run from a shell: its own name and line numbers, and colour only on a terminal."""
    return {"colors": None if stream.isatty() else "nocolor", "file": file}


class MimeBundle:
    """The remote cell's last value, shown with all the representations the site produced."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any] | None = None):
        self.data, self.metadata = data, metadata or {}

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.data, self.metadata

    def __repr__(self) -> str:
        return self.data.get("text/plain", "")


class NotebookOutput:
    """Replays events into the current cell as if the code had run here."""

    def __init__(self) -> None:
        self.result: MimeBundle | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "stream":
            stream = sys.stderr if event["name"] == "stderr" else sys.stdout
            stream.write(event["text"])
            stream.flush()
        elif kind == "display":
            from IPython.display import publish_display_data

            publish_display_data(event["data"], event.get("metadata") or {}, transient=event.get("transient"),
                                 **({"update": True} if event.get("update") else {}))
        elif kind == "clear":
            from IPython.display import clear_output

            clear_output(wait=event.get("wait", False))
        elif kind == "result":
            self.result = MimeBundle(event["data"], event.get("metadata"))


class TerminalOutput:
    """Events as text: streams as they are, rich output by its text/plain form."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, status: bool = False):
        self.out, self.err, self.status = out or sys.stdout, err or sys.stderr, status
        self.error: dict[str, Any] | None = None  # the run's traceback, once shown

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "stream":
            (self.err if event["name"] == "stderr" else self.out).write(event["text"])
            self.out.flush()
        elif kind == "display" and event.get("live"):  # a progress bar: redrawn in place, as it was written
            self.err.write("\r" + event["data"].get("text/plain", "") + ("\n" if event["live"] == "end" else ""))
            self.err.flush()
        elif kind in ("display", "result"):
            text = event["data"].get("text/plain")
            if text:
                print(text, file=self.out)
        elif kind == "error":
            self.error = event
            print("\n".join(event["traceback"]), file=self.err)
        elif kind == "status" and (self.status or event.get("final") and event["state"] != "succeeded"):
            reason = reason_to_show(event.get("reason"), self.error)
            print(f"[{event['state']}]" + (f" ({reason})" if reason else ""), file=self.err)
