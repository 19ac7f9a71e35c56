"""`%split session` (and `jupyter-split session`) as printed: each queued cell with the notebook it came from."""
from __future__ import annotations

import io
import time

from jupyter_split.commands import Context
from jupyter_split.commands.session import show


def _cell(run_id: str, notebook: str | None) -> dict:
    return {"run_id": run_id, "name": None, "state": "queued", "created": 0, "count": 3, "cell": "print(1)",
            "notebook": notebook}


def test_each_queued_cell_names_its_notebook() -> None:
    out = io.StringIO()
    show(Context(out=out), [{"site": "home", "state": "busy", "supported": True, "session": "s1", "pid": 7,
                             "started": time.time(), "memory": 5 << 20, "running": _cell("r-1", None),
                             "queue": [_cell("r-2", "work/a.ipynb"), _cell("r-3", None)], "errors": []}])
    assert out.getvalue().splitlines()[-3:] == ["queued on home, in the order they run:",
                                                "  1. r-2 (In [3]: print(1)) from work/a.ipynb",
                                                "  2. r-3 (In [3]: print(1))"]
