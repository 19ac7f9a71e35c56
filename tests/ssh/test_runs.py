"""Cells on an ssh site (a real sshd on 127.0.0.1): output, variables, errors, interrupt,
cancel, a link that drops mid-cell, a kernel that dies mid-cell, refused host keys."""
from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_split import aio, core
from jupyter_split.config import parse_config
from jupyter_split.ssh.connection import HostKeyError
from tests.fixtures.core import text, tracebacks, write_config

pytestmark = pytest.mark.slow


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings, numbers and booleans read the same in TOML


def ssh_config(sshd, **overrides: Any) -> str:
    site = sshd.site(**overrides)
    lines = ['[experiment]\nname = "t"\nhome = "home"\ndefault_remote = "sg"\n',
             '[sites.home]\njurisdiction = "CN"\n', "[sites.sg]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in site.items()]
    return "\n".join(lines) + "\n"


def split_for(sshd, **overrides: Any) -> core.Split:
    raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
           "sites": {"sg": sshd.site(**overrides), "home": {"jurisdiction": "CN"}}}
    return core.Split(parse_config(raw, "test"))


@pytest.fixture
def ssh_kernel(kernel, split_home, sshd):
    write_config(split_home, ssh_config(sshd))
    kernel.ok("%load_ext jupyter_split")
    return kernel


def test_cells_output_variables_and_remote_tracebacks(ssh_kernel):
    outputs = ssh_kernel.ok("%%on sg\nimport os, sys\nprint('on', os.getpid() != 0)\nprint('err', file=sys.stderr)\n6 * 7")
    # The first cell of the test session may also carry the one-line install notice.
    stderr = [line for line in text(outputs, "stderr").splitlines() if not line.startswith("[jupyter_split] site 'sg': installing")]
    assert text(outputs, "stdout") == "on True\n" and stderr == ["err"]
    assert outputs[-1]["data"]["text/plain"] == "42"
    ssh_kernel.ok("import numpy as np\nbase = np.arange(5)\nscale = lambda a: a * 3")
    ssh_kernel.ok("%%on sg --in base,scale --out tripled,where\nimport sys\ntripled = scale(base)\nwhere = sys.executable")
    shown = text(ssh_kernel.ok("print(tripled.tolist(), '/env/venv/' in where)"))
    assert shown == "[0, 3, 6, 9, 12] True\n"
    outputs, reply = ssh_kernel.run("%%on sg\ndef inner():\n    raise KeyError('remote-side')\ninner()")
    assert reply["status"] == "error"
    tb = tracebacks(outputs)
    assert "KeyError" in tb and "remote-side" in tb and "line 3" in tb and "'sg'" in tb


def _wait_for_stream(kernel, msg_id: str, needle: str) -> None:
    seen, deadline = "", time.monotonic() + 120
    while needle not in seen:
        assert time.monotonic() < deadline, f"never saw {needle!r}; saw {seen!r}"
        msg = kernel.kc.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen += msg["content"]["text"]


def test_interrupt_reaches_the_remote_cell_and_cancel_ends_a_detached_run(ssh_kernel):
    ssh_kernel.ok("%%on sg\nsurvivor = 'kept'")
    msg = ssh_kernel.submit("%%on sg\nimport time\nprint('started', flush=True)\nfor _ in range(900): time.sleep(0.1)")
    _wait_for_stream(ssh_kernel, msg, "started")
    ssh_kernel.interrupt()
    outputs, reply = ssh_kernel.collect(msg, timeout=60)
    assert reply["status"] == "error" and "KeyboardInterrupt" in tracebacks(outputs)
    assert text(ssh_kernel.ok("%%on sg\nprint(survivor)")) == "kept\n"

    outputs = ssh_kernel.ok("%%on sg --detach\nimport time\nprint('going', flush=True)\ntime.sleep(300)")
    run_id = text(outputs).split()[1]
    assert "cancelled" in text(ssh_kernel.ok(f"%split cancel {run_id}"))
    assert "[cancelled]" in text(ssh_kernel.ok(f"%split logs {run_id}"))


@pytest.mark.parametrize("how", ["server kills the connection", "client closes its transport"])
def test_link_drops_mid_cell_and_every_line_arrives_once(sshd, split_home, how):
    split = split_for(sshd)
    lines = 60
    cell = f"import time\nfor i in range({lines}):\n    print('line', i, flush=True)\n    time.sleep(0.05)"
    events: list[dict[str, Any]] = []
    dropped: list[int] = []

    def deliver(event: dict[str, Any]) -> None:
        events.append(event)
        if event["type"] == "stream" and event["text"].startswith("line 10") and not dropped:
            if how.startswith("server"):
                dropped.append(sshd.drop_connections())
            else:
                conn = split.executor("sg").connection
                conn.interactive.conn.abort()  # the transport dies under the live channel, as on a lost link
                dropped.append(1)

    outcome = split.execute(cell, core.CellOptions(site="sg", fresh=True), {}, deliver)
    assert dropped and dropped[0] >= 1
    assert outcome.state == "succeeded", outcome
    shown = "".join(e["text"] for e in events if e["type"] == "stream").splitlines()
    assert shown == [f"line {i}" for i in range(lines)]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "a record was doubled or reordered"
    aio.run(split.executor("sg").close())


@pytest.mark.parametrize("now", [True, False], ids=["killed", "restarted"])
def test_kernel_killed_mid_cell_then_attach_replays_once_and_delivers_out(ssh_kernel, sshd, now):
    # a kernel's shutdown starts with an interrupt (jupyter_client sends SIGINT first, then SIGKILL, or a
    # shutdown request as JupyterLab's Restart does): that interrupt is not the user's, the run goes on
    msg = ssh_kernel.submit(
        "%%on sg --fresh --out total\nimport time\ntotal = 0\n"
        "for i in range(30):\n    total += i\n    print('step', i, flush=True)\n    time.sleep(0.05)")
    _wait_for_stream(ssh_kernel, msg, "step 3")
    ssh_kernel.restart(now=now)
    ssh_kernel.ok("%load_ext jupyter_split")
    run_id = re.search(r"t-sg-\S+", text(ssh_kernel.ok("%split runs"))).group(0)
    log = next(Path(sshd.workdir).glob(f"runs/{run_id}/events.jsonl"))
    deadline = time.monotonic() + 60
    while '"final": true' not in log.read_text().replace('"final":true', '"final": true'):
        assert time.monotonic() < deadline, "the run did not finish on the site while the kernel was gone"
        time.sleep(0.1)
    outputs = ssh_kernel.ok(f"%split attach {run_id}")
    steps = [line for line in text(outputs).splitlines() if line.startswith("step")]
    assert steps == [f"step {i}" for i in range(30)]
    assert text(ssh_kernel.ok("print(total)")) == "435\n"


def test_runner_outlives_the_connection_and_its_secrets_stay_off_the_command_line(sshd, split_home, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "secret-value-" + "x" * 28)
    split = split_for(sshd, wandb={"mode": "online"})
    cell = "import os\nprint('key of', len(os.environ.get('WANDB_API_KEY', '')))"
    outcome = split.execute(cell, core.CellOptions(site="sg", detach=True), {}, lambda e: None)
    record = split.index.get(outcome.run_id)
    pid = record.handle["pid"]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"jupyter_split.runner" in cmdline and b"secret-value" not in cmdline
    assert Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[3] == str(pid), "not its own session"
    sshd.drop_connections()
    outcome = split.attach(outcome.run_id, (seen := []).append, {})
    assert outcome.state == "succeeded" and any(e.get("text") == "key of 41\n" for e in seen)
    run_dir = Path(record.run_dir)
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert b"secret-value" not in path.read_bytes(), f"the secret leaked into {path}"
    aio.run(split.executor("sg").close())


def test_unknown_host_key_stops_a_cell_before_anything_runs(sshd, split_home, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    split = split_for(sshd, known_hosts=str(empty), workdir=str(tmp_path / "wd"))
    with pytest.raises(HostKeyError) as err:
        split.execute("print(1)", core.CellOptions(site="sg"), {}, lambda e: None)
    assert sshd.fingerprint in str(err.value)
    assert not (tmp_path / "wd").exists()


def test_cli_sites_and_doctor_report_the_ssh_site(sshd, split_home):
    import os
    import subprocess
    import sys

    from tests.services._proc import free_port

    config = ssh_config(sshd) + "\n[sites.down]\n" + "\n".join(
        f"{k} = {toml_value(v)}" for k, v in sshd.site(port=free_port(), connect_timeout=2.0).items()) + "\n"
    path = write_config(split_home, config)
    env = {**os.environ, "JUPYTER_SPLIT_CONFIG": str(path)}
    cli = [sys.executable, "-m", "jupyter_split.cli"]
    sites = subprocess.run([*cli, "sites"], capture_output=True, text=True, env=env, timeout=120)
    assert sites.returncode == 0, sites.stderr
    rows = {line.split()[0]: line for line in sites.stdout.splitlines() if line.split()}
    assert " yes (" in rows["sg"], rows["sg"]
    assert "no: site 'down': cannot connect to" in rows["down"] and "Check host and port" in rows["down"]
    doctor = subprocess.run([*cli, "doctor", "sg", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout[doctor.stdout.index("{"):])
    assert report["parity"] == "ok" and report["python"].endswith("/env/venv/bin/python")
    assert report["remote"]["jupyter_split"] == report["local"]["jupyter_split"]
    assert report["install"]["status"] == "ok" and report["install"]["venv_current"]
    assert report["install"]["python_version"] == report["local"]["python"]


class SilentLink:
    """A TCP relay to sshd whose current connections can go silent: open, but passing nothing.

    That is how a long cross-border link usually fails (no reset, no close); only keepalives notice.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.connections: list[dict[str, Any]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        state = {"silent": False, "writers": [writer, up_writer]}
        self.connections.append(state)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                while state["silent"]:
                    await asyncio.sleep(0.05)  # hold the bytes: nothing arrives, nothing closes
                dst.write(data)
                await dst.drain()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    def silence(self) -> None:
        """Every connection open now goes silent; later ones pass traffic."""
        for state in self.connections:
            state["silent"] = True

    async def close(self) -> None:
        self.server.close()
        for state in self.connections:
            for writer in state["writers"]:
                writer.transport.abort()


def test_silent_link_is_noticed_by_keepalives_and_the_cell_resumes(sshd, split_home, tmp_path):
    link = SilentLink(sshd.port)
    port = aio.run(link.start())
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {sshd.host_public_key}\n")
    split = split_for(sshd, port=port, known_hosts=str(known), keepalive_interval=1.0)
    lines = 40
    cell = f"import time\nfor i in range({lines}):\n    print('line', i, flush=True)\n    time.sleep(0.1)"
    events: list[dict[str, Any]] = []

    def deliver(event: dict[str, Any]) -> None:
        events.append(event)
        if event["type"] == "stream" and event["text"] == "line 5\n":
            link.silence()

    try:
        outcome = split.execute(cell, core.CellOptions(site="sg", fresh=True), {}, deliver)
    finally:
        aio.run(split.executor("sg").close())
        aio.run(link.close())
    assert outcome.state == "succeeded", outcome
    shown = "".join(e["text"] for e in events if e["type"] == "stream").splitlines()
    assert shown == [f"line {i}" for i in range(lines)]
    assert len(link.connections) >= 2, "the client never opened a second connection after the silence"


def test_sshd_without_unix_socket_forwarding_falls_back_to_the_event_log(sshd, split_home, tmp_path):
    from jupyter_split.ssh.connection import SshError
    from tests.services.sshd import start_sshd

    strict = start_sshd(tmp_path / "strict", AllowStreamLocalForwarding="no")
    try:
        raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
               "sites": {"sg": strict.site(workdir=sshd.workdir), "home": {"jurisdiction": "CN"}}}
        split = core.Split(parse_config(raw, "test"))
        with pytest.raises(SshError, match="refuses unix-socket forwarding.*run the cell again"):
            split.execute("print('never')", core.CellOptions(site="sg"), {}, lambda e: None)
        seen: list[dict[str, Any]] = []
        namespace = {"x": 20}
        outcome = split.execute("print('via the log')\ny = x + 1", core.CellOptions(site="sg", inputs=["x"], outputs=["y"]),
                                namespace, seen.append)
        assert outcome.state == "succeeded", seen
        assert [e["text"] for e in seen if e["type"] == "stream"] == ["via the log\n"]
        assert namespace["y"] == 21
        aio.run(split.executor("sg").close())
    finally:
        strict.stop()
