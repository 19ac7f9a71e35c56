"""The agent, a real process: a command handed to it is the same command as in its own process (output,
errors, exit status, folder, environment, terminal, Ctrl-C), and it stops when idle, asked, or stale,
and is never used from a folder other users can write."""
from __future__ import annotations

import array
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import jupyter_split.agent
from jupyter_split.agent.forward import socket_path
from tests.fixtures.core import AS_A_JOB, on_a_terminal, write_config

# each test starts an agent, and most start runs; one makes the package's code look changed, which
# stops every agent of this checkout: `make test` runs a file's tests on one worker (`--dist loadfile`)
pytestmark = pytest.mark.slow

SITES = """\
[experiment]
name = "t"
home = "home"
default_remote = "home"

[sites.home]
jurisdiction = "CN"
storage = "file://{store}"
"""
COMMAND = Path(sys.executable).with_name("jupyter-split")


def cli(*args: str, agent: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JUPYTER_SPLIT_AGENT": "on" if agent else "off", **kwargs.pop("env", {})}
    return subprocess.run([str(COMMAND), *args], capture_output=True, text=True, env=env, timeout=120, **kwargs)


def served() -> int:
    status = cli("agent", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    return int(status.stdout.split(" command(s) served")[0].rsplit(" ", 1)[1])


def until(check, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not so within {seconds} s: {check}"
        time.sleep(0.05)


@pytest.fixture
def agent(split_home: Path):
    write_config(split_home, SITES.format(store=split_home / "store"))
    started = cli("agent", "start")
    assert started.returncode == 0 and "agent started: pid" in started.stdout, started.stdout + started.stderr
    yield int(started.stdout.split("pid ")[1].split(",")[0])
    cli("agent", "stop")


def test_a_command_through_the_agent_is_the_command_in_its_own_process(split_home: Path, agent: int) -> None:
    shown = {}
    for args in (["sites"], ["push", "nowhere", "home:ckpt"], ["logz"], ["runs", "--limit", "-1"]):
        own = cli(*args, agent=False)
        handed = cli(*args)
        assert (handed.returncode, handed.stdout, handed.stderr) == (own.returncode, own.stdout, own.stderr), args
        shown[args[0]] = handed
    assert shown["sites"].returncode == 0 and "home (home)" in shown["sites"].stdout
    assert shown["push"].returncode == 1 and "does not exist" in shown["push"].stderr
    assert shown["logz"].returncode == 2 and "Did you mean 'logs'?" in shown["logz"].stderr
    assert shown["runs"].returncode == 2 and "--limit" in shown["runs"].stderr
    assert served() == 4, "the agent ran each of the four commands"
    # the caller's folder (probe.py is found there), environment and umask, not the agent's (it runs in
    # /, with its own); the run's process inherits them from the command's
    probe = split_home / "work" / "probe.py"
    probe.write_text("import os\nprint(os.environ['PROBE'], oct(os.umask(0)))\n")
    ran = cli("run", "home", "probe.py", env={"PROBE": "from-the-caller"}, cwd=split_home / "work", umask=0o27)
    assert ran.returncode == 0, ran.stderr
    assert "from-the-caller 0o27" in ran.stdout
    assert served() == 5
    (split_home / "work" / "ckpt").mkdir()
    (split_home / "work" / "ckpt" / "w.bin").write_bytes(b"weights" * 1000)
    pushed = cli("push", "ckpt", "home:ckpt", "--quiet", cwd=split_home / "work")
    assert pushed.returncode == 0, pushed.stderr
    assert (split_home / "store" / "ckpt" / "w.bin").read_bytes() == b"weights" * 1000
    assert served() == 6
    started = cli("agent", "start")
    assert started.stdout.startswith(f"agent already running: pid {agent}")


def test_a_terminal_and_its_ctrl_c_reach_the_command(split_home: Path, agent: int) -> None:
    # a question asked on the caller's terminal, answered there
    env = {**os.environ, "JUPYTER_SPLIT_AGENT": "on"}
    code, shown = on_a_terminal("n", "session", "home", "--stop", env=env)
    assert code == 1 and "not done: the session on site 'home' is left as it was" in shown, shown
    assert served() == 1
    # Ctrl-C at the caller, while the command waits for an answer on its terminal, reaches the command:
    # it ends on the KeyboardInterrupt, by SIGINT, as it does in its own process
    endings = []
    for handed in (False, True):
        code, shown = on_a_terminal(None, "session", "home", "--stop",
                                    env={**env, "JUPYTER_SPLIT_AGENT": "on" if handed else "off"})
        endings.append((code, shown.strip().splitlines()[-1]))
    assert endings[0] == endings[1] == (-signal.SIGINT, "KeyboardInterrupt"), endings
    assert served() == 2
    # started with Ctrl-C ignored (`nohup`, `cmd &` in a script), the command ignores it in the agent too,
    # as in its own process: it goes on to the answer
    endings = []
    for handed in (False, True):
        code, shown = on_a_terminal(None, "session", "home", "--stop", ctrl_c_ignored=True,
                                    env={**env, "JUPYTER_SPLIT_AGENT": "on" if handed else "off"})
        endings.append((code, "not done: the session on site 'home' is left as it was" in shown))
    assert endings[0] == endings[1] == (1, True), endings
    assert served() == 3


def test_the_agent_stops_when_its_code_changes_and_the_command_runs_anyway(split_home: Path, agent: int) -> None:
    module = Path(jupyter_split.agent.__file__)
    before = module.stat()
    try:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        ran = cli("sites")
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert ran.returncode == 0 and "home (home)" in ran.stdout, ran.stderr
    until(lambda: not os.path.exists(socket_path()))
    assert f"agent: pid {agent} stops: its code changed on disk" in (split_home / "data" / "agent.log").read_text()
    gone = cli("agent", "status")
    assert gone.returncode == 1 and "no agent runs" in gone.stdout


def test_an_idle_agent_stops_and_a_bad_request_is_dropped(split_home: Path) -> None:
    write_config(split_home, SITES.format(store=split_home / "store"))
    started = cli("agent", "start", "--idle", "0.05")  # 3 s
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("pid ")[1].split(",")[0])
    path = socket_path()
    open_before = len(os.listdir(f"/proc/{pid}/fd"))
    for junk in (b"\x00\x00\x00\x05{not", b"\x00\x00\x00\x02[]", b"\xff\xff\xff\xff"):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendmsg([junk], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b"", "a bad request gets no answer and is dropped"
    assert len(os.listdir(f"/proc/{pid}/fd")) == open_before, "the descriptors passed with bad requests are closed"
    # a run without its terminal's descriptors is refused, and nothing runs
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        body = json.dumps({"op": "run", "argv": ["sites"], "cwd": "/", "env": {}, "umask": 18}).encode()
        sock.sendall(struct.pack(">I", len(body)) + body)
        assert "stdin, stdout and stderr" in json.loads(sock.makefile().readline())["refused"]
    assert served() == 0, "the agent serves on after bad requests"
    until(lambda: not os.path.exists(path), 20)
    log = (split_home / "data" / "agent.log").read_text()
    assert f"agent: pid {pid} stops: idle" in log and log.count("a request was dropped") == 3, log
    assert "--idle goes with `agent start` only" in cli("agent", "stop", "--idle", "3").stderr


#: The command's process, as the scripted agent names it: Ctrl-C as a fresh interpreter has it (the test
#: run's may be ignored), and a line once it is in place.
STAND_IN = ("import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "print('ready', flush=True); time.sleep(60)")


def test_a_ctrl_c_before_the_agent_names_the_process_still_reaches_it(split_home: Path) -> None:
    """The agent here is scripted (a socket of this test's): it holds its answer until the caller has
    had its Ctrl-C, then names a process of this test's as the command's."""
    write_config(split_home, SITES.format(store=split_home / "store"))
    path = socket_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        caller = subprocess.Popen([sys.executable, "-c", AS_A_JOB, "default", "sites"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={**os.environ, "JUPYTER_SPLIT_AGENT": "on"})
        server.settimeout(60)
        conn, _ = server.accept()
        with conn:
            passed = array.array("i")
            data, ancillary, _, _ = conn.recvmsg(1 << 20, socket.CMSG_LEN(3 * passed.itemsize))
            for _level, _kind, payload in ancillary:
                passed.frombytes(payload)
            for fd in passed:
                os.close(fd)
            assert json.loads(data[4:])["argv"] == ["sites"]
            caller.send_signal(signal.SIGINT)  # the request is out; its answer is not
            time.sleep(0.5)
            assert caller.poll() is None, "Ctrl-C before the answer ended the caller: " + caller.stderr.read().decode()
            command = subprocess.Popen([sys.executable, "-c", STAND_IN],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert command.stdout.readline() == b"ready\n"  # its Ctrl-C handler is in place
            conn.sendall(json.dumps({"pid": command.pid}).encode() + b"\n")
            assert command.wait(timeout=30) == -signal.SIGINT and b"KeyboardInterrupt" in command.stderr.read()
            command.stdout.close(), command.stderr.close()
            conn.sendall(json.dumps({"exit": 1}).encode() + b"\n")
        assert caller.wait(timeout=30) == 1
        caller.stdout.close(), caller.stderr.close()


def test_no_agent_in_a_folder_others_can_write(split_home: Path, agent: int) -> None:
    data = split_home / "data"
    data.chmod(0o777)
    try:
        ran = cli("sites")  # the agent there is not asked: anybody could have put that socket there
        refused = [cli("agent", action) for action in ("start", "status", "stop")]
    finally:
        data.chmod(0o700)
    assert ran.returncode == 0 and "home (home)" in ran.stdout, ran.stderr
    for answer in refused:
        assert answer.returncode == 2, answer.stdout
        assert f"the data directory {data} is writable by other users: `chmod go-w {data}`" in answer.stderr
    assert served() == 0, "the command ran in its own process"


def test_a_command_whose_caller_is_killed_ends_as_with_a_closed_terminal(split_home: Path, agent: int) -> None:
    (split_home / "work" / "slow.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(120)\n")
    caller = subprocess.Popen([str(COMMAND), "run", "home", "slow.py"], stdout=subprocess.PIPE, text=True,
                              cwd=split_home / "work", env={**os.environ, "JUPYTER_SPLIT_AGENT": "on"})
    assert caller.stdout.readline().strip() == "started"
    (watcher,) = psutil.Process(agent).children()
    (command,) = watcher.children()
    assert command.cmdline() == psutil.Process(agent).cmdline(), "the command runs in a fork of the agent"
    caller.kill()
    caller.wait(timeout=30)
    caller.stdout.close()
    gone, alive = psutil.wait_procs([command, watcher], timeout=30)
    assert not alive, f"still running after their caller was killed: {alive}"
    assert served() == 1, "the agent serves on"


def test_in_a_notebook_the_verb_says_the_kernel_is_warm_and_starts_nothing(split_home: Path) -> None:
    from jupyter_split import commands

    shown = io.StringIO()
    assert commands.dispatch(["agent", "start"], commands.Context(out=shown, notebook=True), prog="%split") == 0
    assert "in a notebook, `%split` runs in the kernel" in shown.getvalue()
    assert not os.path.exists(socket_path()) and cli("agent", "status").returncode == 1
