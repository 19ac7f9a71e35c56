"""What the sidebar's run panel needs to show a run of any length in bounded memory: the log's tail
to open on, and the window it keeps.

The panel folds records into a window the same size as a notebook cell's (`[notebook] scrollback`,
`commands/render.Scrollback`), so the size is given here, from the config, and the panel keeps no
number of its own. It opens on the log's last lines rather than replaying from `seq` 0: a week's
log would otherwise cross the wire, and the browser, whole before the panel showed its end.
"""
from __future__ import annotations

from typing import Any

from ..commands.render import LONG_LINE
from ..core import lines as log_lines


def window(split: Any) -> dict[str, int]:
    """The window a run panel keeps, as a notebook cell does: `lines` of text (the config's
    `[notebook] scrollback`) and lines cut past `long_line` characters (the log keeps them whole)."""
    return {"lines": split.config.notebook.scrollback, "long_line": LONG_LINE}


def tail_records(split: Any, run_id: str, lines: int) -> list[dict[str, Any]]:
    """The log's last records that hold `lines` lines, whole (`core.lines.tail_records`: the rule of
    `logs --tail`, read back from the end, never from the log's start): the panel keeps the first half
    of its window as printed and the rest as a tail, as a notebook cell does."""
    return log_lines.tail_records(lambda count: split.run_tail(run_id, count), lines)
