"""Cells on the built-in two-site default, through a real IPython kernel."""
from __future__ import annotations

import json

import pytest

from tests.fixtures.core import text, tracebacks

pytestmark = pytest.mark.slow


def test_output_arrives_in_order_on_both_default_sites(kernel):
    cell = (
        "import sys\nfrom IPython.display import display, HTML\n"
        "print('one')\nprint('two', file=sys.stderr)\ndisplay(HTML('<b>three</b>'))\nprint('four')\n40 + 2"
    )
    for magic in ("%%remote_gpu", "%%on home"):
        outputs = kernel.ok(f"{magic}\n{cell}")
        kinds = [(o["type"], o.get("name")) for o in outputs]
        assert kinds == [("stream", "stdout"), ("stream", "stderr"), ("display_data", None),
                         ("stream", "stdout"), ("execute_result", None)], outputs
        assert text(outputs, "stdout") == "one\nfour\n"
        assert outputs[2]["data"]["text/html"] == "<b>three</b>"
        assert outputs[-1]["data"]["text/plain"] == "42"


def test_session_keeps_its_namespace_and_runs_in_another_process(kernel):
    kernel.ok("%%on home\nimport os\nremote_pid = os.getpid()\ncounter = 1")
    outputs = kernel.ok("%%on home --out remote_pid\ncounter += 1\nprint(counter)")
    assert text(outputs) == "2\n"
    outputs = kernel.ok("import os\nprint(remote_pid != os.getpid())")
    assert text(outputs) == "True\n"


def test_in_out_round_trip_of_tensors_arrays_classes_functions(kernel):
    kernel.ok(
        "import torch, numpy as np\n"
        "class Point:\n    def __init__(self, x, y): self.x, self.y = x, y\n"
        "def scale(p, k): return Point(p.x * k, p.y * k)\n"
        "t = torch.arange(6, dtype=torch.float32).reshape(2, 3)\n"
        "arrays = {'a': np.ones(3), 'b': np.arange(4)}\np = Point(1, 2)"
    )
    kernel.ok(
        "%%remote_gpu --in t,arrays,p,scale --out t2,arrays2,q,scale2\n"
        "t2 = t * 2\narrays2 = {k: v + 1 for k, v in arrays.items()}\nq = scale(p, 10)\n"
        "def scale2(p): return scale(p, 2)"
    )
    outputs = kernel.ok(
        "print(t2.tolist(), arrays2['a'].tolist(), arrays2['b'].tolist(), q.x, q.y, type(q) is Point, scale2(p).y)"
    )
    assert text(outputs) == "[[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]] [2.0, 2.0, 2.0] [1, 2, 3, 4] 10 20 True 4\n"


def test_remote_exception_shows_the_remote_traceback_with_cell_lines(kernel):
    outputs, reply = kernel.run("%%on home\nx = 1\n\ndef boom():\n    raise ValueError('bad value')\nboom()")
    assert reply["status"] == "error"
    assert len([o for o in outputs if o["type"] == "error"]) == 1
    tb = tracebacks(outputs)
    assert "ValueError" in tb and "bad value" in tb
    assert "line 6" in tb and "line 5" in tb  # the call and the raise, counted as the editor does (magic line 1)
    assert "home" in tb and "failed" in tb


def test_interrupt_reaches_the_remote_cell_and_the_session_survives(kernel):
    kernel.ok("%%on home\nsurvivor = 'still here'")
    msg = kernel.submit("%%on home\nimport time\nprint('started', flush=True)\nfor _ in range(600): time.sleep(0.1)")
    # wait for the remote cell to start before pressing stop
    import time as _time
    seen = ""
    deadline = _time.monotonic() + 60
    while "started" not in seen and _time.monotonic() < deadline:
        m = kernel.kc.get_iopub_msg(timeout=60)
        if m["parent_header"].get("msg_id") == msg and m["msg_type"] == "stream":
            seen += m["content"]["text"]
    kernel.interrupt()
    outputs, reply = kernel.collect(msg, timeout=60)
    assert reply["status"] == "error"
    tb = tracebacks(outputs)
    assert "KeyboardInterrupt" in tb and "interrupted" in tb
    assert text(kernel.ok("%%on home\nprint(survivor)")) == "still here\n"


def test_timeout_ends_a_long_cell(kernel):
    outputs, reply = kernel.run("%%on home --timeout 1\nimport time\ntime.sleep(60)")
    assert reply["status"] == "error"
    tb = tracebacks(outputs)
    assert "timeout" in tb and "--timeout 1s" in tb


def test_matplotlib_and_tqdm_reach_the_cell(kernel):
    outputs = kernel.ok(
        "%%on home\nimport matplotlib.pyplot as plt\nfrom tqdm import tqdm\n"
        "for _ in tqdm(range(3)): pass\nplt.plot([1, 2, 3])\nplt.show()"
    )
    assert any("image/png" in o.get("data", {}) for o in outputs if o["type"] == "display_data")
    bars = [o for o in outputs if o["type"] in ("display_data", "update_display_data") and "display_id" in o["transient"]]
    assert bars and "3/3" in bars[-1]["data"]["text/plain"]  # tqdm's bar: a display, as in a local notebook


def test_detach_restart_kernel_attach_replays_everything_once(kernel):
    outputs = kernel.ok(
        "%%on home --detach --out total\nimport time\ntotal = 0\n"
        "for i in range(20):\n    total += i\n    print('step', i, flush=True)\n    time.sleep(0.1)"
    )
    run_id = text(outputs).split()[1]
    kernel.restart()
    kernel.ok("%load_ext jupyter_split")
    outputs = kernel.ok(f"%split attach {run_id}")
    steps = [line for line in text(outputs).splitlines() if line.startswith("step")]
    assert steps == [f"step {i}" for i in range(20)]
    assert text(kernel.ok("print(total)")) == "190\n"
    runs = text(kernel.ok("%split runs"))
    assert run_id in runs and "succeeded" in runs


def test_runner_killed_mid_cell_marks_the_run_failed_and_does_not_hang(kernel, split_home):
    outputs, reply = kernel.run(
        "%%on home --fresh\nimport os, signal, time\nprint('dying', flush=True)\ntime.sleep(0.5)\n"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert reply["status"] == "error"
    tb = tracebacks(outputs)
    assert "SIGKILL" in tb and "failed" in tb
    assert "dying" in text(outputs)
    events = [json.loads(line) for p in (split_home / "data").rglob("events.jsonl") for line in p.read_text().splitlines()]
    assert events and not [e for e in events if e.get("final")], "the runner's log is the runner's alone"
    ended = [json.loads(p.read_text()) for p in (split_home / "data").rglob("ended.json")]
    assert [e["state"] for e in ended] == ["failed"] and "SIGKILL" in ended[0]["reason"]


def test_cancel_ends_a_detached_run(kernel):
    outputs = kernel.ok("%%on home --detach\nimport time\nprint('going', flush=True)\ntime.sleep(300)")
    run_id = text(outputs).split()[1]
    assert "cancelled" in text(kernel.ok(f"%split cancel {run_id}"))
    logs = text(kernel.ok(f"%split logs {run_id}"))
    assert "[cancelled]" in logs


def test_a_notebook_runs_headless_with_nbclient(split_home):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (
        "%load_ext jupyter_split\ndata = list(range(10))",
        "%%remote_gpu --in data --out model\nmodel = {'total': sum(data)}\nprint('trained abroad')",
        "%%on home --in model\nprint('served at home', model['total'])",
        "print(model)",
    )]
    NotebookClient(nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(split_home / "work")}}).execute()
    outs = ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells]
    assert outs[1:] == ["trained abroad\n", "served at home 45\n", "{'total': 45}\n"]


def test_runs_lists_detached_runs_up_to_date(kernel):
    outputs = kernel.ok("%%on home --detach\nprint('quick one')")
    run_id = text(outputs).split()[1]
    dying = text(kernel.ok("%%on home --detach\nimport os, signal, time\ntime.sleep(0.5)\nos.kill(os.getpid(), signal.SIGKILL)")).split()[1]
    import time
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listing = text(kernel.ok("%split runs"))
        rows = {line.split()[0]: line.split()[2] for line in listing.splitlines()[1:]}
        if rows.get(run_id) == "succeeded" and rows.get(dying) == "failed":
            break
        time.sleep(0.5)
    assert rows[run_id] == "succeeded" and rows[dying] == "failed", listing
    assert "quick one" in listing


def test_a_deep_workdir_still_gets_a_live_session(kernel, split_home):
    from tests.fixtures.core import write_config

    deep = split_home / ("d" * 60) / ("e" * 60)
    write_config(split_home, f'[sites.home]\njurisdiction = "CN"\nworkdir = "{deep}"\n[experiment]\ndefault_remote = "home"\n')
    kernel.ok("import jupyter_split.core as c\nc.reset()")
    kernel.ok("%%on home\nkept = 7")
    assert text(kernel.ok("%%on home\nprint(kept)")) == "7\n"
    assert (deep / "sessions").is_dir()
