"""Runs that print for weeks: the notebook keeps a bounded window of a cell's text, and a progress
bar redrawn at full speed is a bounded number of records in the run's event log.

Each test drives a real IPython kernel and a real runner on the home site.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_split import cli
from jupyter_split.runs.index import RunIndex
from tests.fixtures.core import text, tracebacks, write_config
from tests.ssh.test_runs import ssh_kernel  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow


def notebook_view(outputs: list[dict]) -> list[dict]:
    """The cell's outputs as the notebook ends up showing them: each display with an id holds its
    last update."""
    shown: list[dict] = []
    for o in outputs:
        if o["type"] == "update_display_data":
            for kept in shown:
                if kept.get("transient", {}).get("display_id") == o["transient"]["display_id"]:
                    kept["data"] = o["data"]
        else:
            shown.append(dict(o))
    return shown


def text_lines(shown: list[dict]) -> list[str]:
    """Every line of text the cell shows: its streams, and the text of its displays that are text only.
    Consecutive stream messages of one stream are one text, as a notebook joins them (a message may
    end inside a line)."""
    texts: list[tuple[str | None, str]] = []
    for o in shown:
        if o["type"] == "stream":
            if texts and texts[-1][0] == o["name"]:
                texts[-1] = (o["name"], texts[-1][1] + o["text"])
            else:
                texts.append((o["name"], o["text"]))
        elif o["type"] == "display_data" and set(o["data"]) == {"text/plain"}:
            texts.append((None, o["data"]["text/plain"]))
    return [line for _, text in texts for line in text.splitlines()]


def events_of(root: Path) -> list[dict]:
    """The records of the one run's event log under the test's data directory."""
    [log] = list((root / "data").rglob("events.jsonl"))
    return [json.loads(line) for line in log.read_text().splitlines()]


def run_id_of(root: Path) -> str:
    [log] = list((root / "data").rglob("events.jsonl"))
    return log.parent.name


LONG_CELL = """%%on home
import matplotlib.pyplot as plt
for i in range(200_000):
    print(f"line {i}")
    if i == 100_000:
        plt.plot([1, 2, 3])
        plt.show()
"the end"
"""


def test_a_cell_of_200000_lines_keeps_a_window_and_says_where_the_rest_is(kernel, split_home):
    outputs = kernel.ok(LONG_CELL, timeout=300)
    shown = notebook_view(outputs)
    lines = text_lines(shown)
    run = run_id_of(split_home)
    assert len(lines) <= 5000 + 1, len(lines)  # the default scrollback, and the note's line
    assert lines[0] == "line 0" and lines[-1] == "line 199999", lines[-3:]
    notes = [line for line in lines if "lines left out" in line]
    assert notes == [f"… {200_000 - 5000:,} lines left out here: `%split logs {run}` shows them all"], notes
    figures = [o for o in shown if o["type"] == "display_data" and "image/png" in o["data"]]
    assert len(figures) == 1  # the figure in the middle survives
    results = [o for o in shown if o["type"] == "execute_result"]
    assert [r["data"]["text/plain"] for r in results] == ["'the end'"]
    # the lines the window shows are whole and in order: the first half, then the last lines
    numbers = [int(line.split()[1]) for line in lines if line.startswith("line ")]
    assert numbers == list(range(2500)) + list(range(200_000 - 2500, 200_000))


def test_a_folded_cell_keeps_its_error_and_attach_folds_the_same_way(kernel, split_home, capsys):
    write_config(split_home, '[sites.home]\njurisdiction = "CN"\n[experiment]\ndefault_remote = "home"\n'
                             '[notebook]\nscrollback = 100\n')
    kernel.ok("import jupyter_split.core as c\nc.reset()")
    outputs, reply = kernel.run("%%on home\nimport sys\nfor i in range(10_000):\n    print(f'out {i}')\n"
                                "print('err last', file=sys.stderr)\nraise ValueError('after ten thousand lines')",
                                timeout=300)
    assert reply["status"] == "error"
    assert "ValueError: after ten thousand lines" in tracebacks(outputs)
    run = run_id_of(split_home)
    for shown in (notebook_view(outputs), notebook_view(kernel.run(f"%split attach {run}", timeout=300)[0])):
        lines = text_lines(shown)
        assert len(lines) <= 100 + 1, len(lines)
        assert lines[0] == "out 0" and lines[-2:] == ["out 9999", "err last"], lines[-3:]
        assert f"lines left out here: `%split logs {run}` shows them all" in "\n".join(lines)
    # what the note promises: the log has every line
    assert cli.main(["logs", run]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("out ")] == [f"out {i}" for i in range(10_000)]


def test_a_cell_within_the_window_shows_every_line_and_no_note(kernel):
    outputs = kernel.ok("%%on home\nfor i in range(2500):\n    print(i)")
    assert text(outputs) == "".join(f"{i}\n" for i in range(2500))  # half the window: as printed
    assert not [o for o in outputs if o["type"] == "display_data"]
    lines = text_lines(notebook_view(kernel.ok("%%on home\nfor i in range(4999):\n    print(i)")))
    assert lines == [str(i) for i in range(4999)]


TQDM_CELL = """%%on home
from tqdm import tqdm
print("before")
for i in tqdm(range(100_000), mininterval=0, miniters=1):
    if i % 10_000 == 0:
        print(f"step {i}")
print("after")
"""


def test_a_bar_redrawn_100000_times_is_few_records_and_ends_exact(kernel, split_home):
    outputs = kernel.ok(TQDM_CELL, timeout=300)
    _few_records_and_exact(events_of(split_home), outputs)


def test_a_bar_redrawn_100000_times_on_an_ssh_site_is_few_records_and_ends_exact(ssh_kernel, split_home):
    outputs = ssh_kernel.ok(TQDM_CELL.replace("%%on home", "%%on sg"), timeout=300)
    [record] = RunIndex().list(None, 1)  # the cell's run; its log is in the test sshd's folder, on this machine
    assert record.site == "sg"
    log = Path(record.run_dir, "events.jsonl")
    _few_records_and_exact([json.loads(line) for line in log.read_text().splitlines()], outputs)


def _few_records_and_exact(events: list[dict], outputs: list) -> None:
    assert len(events) <= 2000, len(events)
    bars = [e for e in events if e["type"] == "display" and e.get("live")]
    assert bars and bars[-1]["live"] == "end" and "100000/100000" in bars[-1]["data"]["text/plain"]
    assert len({b["transient"]["display_id"] for b in bars}) == 1
    # the bar's states between its first and last: at most one a second by the log's own clock
    # (a state a flush, every 50 ms, is what the log had before)
    span = bars[-1]["t"] - bars[0]["t"]
    assert len(bars) <= span + 3, (len(bars), span)
    shown = [o for o in notebook_view(outputs) if o["type"] == "display_data"]
    assert len(shown) == 1 and "100000/100000" in shown[0]["data"]["text/plain"], shown
    # ordinary lines: every one, in order, around and during the bar
    assert text(outputs, "stdout") == "before\n" + "".join(f"step {i}\n" for i in range(0, 100_000, 10_000)) + "after\n"
