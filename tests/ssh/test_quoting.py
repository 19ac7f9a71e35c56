"""Property: no site name, path or variable name can inject a command on an ssh site.

Hypothesis draws strings full of shell syntax (spaces, quotes, `;`, `$()`, backticks,
globs, newlines) and sends them through the real sshd: as arguments, as working
folders, as SFTP paths and as run directories of a launched runner. Each must arrive
byte for byte, and the canary file that every payload tries to create must never exist.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from jupyter_split import aio
from jupyter_split.commands.options import variable_names as _names
from jupyter_split.config import ConfigError, SiteConfig, parse_config
from jupyter_split.executors.base import LaunchSpec
from jupyter_split.executors.ssh import SshExecutor
from jupyter_split.ssh.connection import connection_for

CANARY = "PWNED"
PAYLOADS = [f"$(touch {CANARY})", f"`touch {CANARY}`", f"; touch {CANARY}", f"' ; touch {CANARY} ; '",
            f'" ; touch {CANARY} ; "', f"| touch {CANARY}", f"&& touch {CANARY}", f"\ntouch {CANARY}\n",
            "$HOME", "*", "~", "-rf", "--", "\\", "'", '"', " ", "%s", "${IFS}", ">x", "<y"]
hostile = st.lists(st.one_of(st.sampled_from(PAYLOADS), st.text(min_size=1, max_size=8)), min_size=1, max_size=4) \
    .map("".join)
names = hostile.map(lambda s: s.replace("/", "_").replace("\0", "_")).filter(lambda s: s not in (".", ".."))
args = hostile.filter(lambda s: "\0" not in s)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _no_canary(*roots: Path) -> None:
    """Commands start in the login folder; runners in their run folder: look in both."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert not (home / CANARY).exists(), f"a payload ran as a command ({home / CANARY} exists)"
    for root in roots:
        assert not list(root.rglob(CANARY)), f"a payload ran as a command ({CANARY} under {root})"


def _site(sshd) -> SiteConfig:
    return SiteConfig(name="sg", **sshd.site())


@SETTINGS
@given(words=st.lists(args, min_size=1, max_size=5))
def test_arguments_arrive_verbatim(sshd, words):
    conn = aio.run(_conn(sshd))
    done = aio.run(conn.run(["printf", "%s\\0", *words]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1] == words
    _no_canary()


@SETTINGS
@given(name=names)
def test_working_folders_and_sftp_paths_are_taken_literally(sshd, name):
    conn = aio.run(_conn(sshd))
    folder = Path(sshd.root) / "quoting" / name
    target = str(folder / name)
    aio.run(conn.write_file(target, name.encode("utf-8", "surrogateescape")))
    assert Path(target).read_bytes() == name.encode("utf-8", "surrogateescape")
    assert aio.run(conn.read_file(target)) == name.encode("utf-8", "surrogateescape")
    done = aio.run(conn.run(["pwd", "-P"], cwd=str(folder)))
    assert done.returncode == 0 and done.stdout.decode("utf-8", "surrogateescape") == str(folder.resolve()) + "\n"
    _no_canary(Path(sshd.root) / "quoting")


@settings(SETTINGS, max_examples=10)  # each example starts a real runner (about a second)
@given(name=names)
def test_launched_runner_gets_its_run_dir_and_argv_literally(sshd, name):
    ex = SshExecutor(_site(sshd), parse_config({"sites": {"sg": sshd.site()}, "experiment": {
        "home": "sg", "default_remote": "sg"}}, "test"))
    run_dir = ex.path("quoting-runs", name)
    # `--probe` makes the runner print its versions and exit: the argv must reach it unchanged.
    spec = LaunchSpec("r", run_dir, ["--probe"], env={"ODD": name}, stdin=b"{}\n")
    handle = aio.run(ex.launch(spec))
    log = Path(run_dir) / "runner.log"
    for _ in range(200):
        if not aio.run(ex.alive(handle)) and log.exists() and log.read_bytes():
            break
        aio.run(_sleep(0.05))
    assert json.loads(log.read_text().strip().splitlines()[-1])["python"]
    _no_canary(Path(ex.workdir) / "quoting-runs")


@given(name=hostile)
def test_hostile_site_and_variable_names_are_refused_before_anything_runs(name):
    if not name.replace("-", "").replace("_", "").isalnum():
        # a NUL is refused by the check every config string gets, which names the first field holding it
        with pytest.raises(ConfigError, match="site name" if "\x00" not in name else r"`experiment.home`: has a NUL"):
            parse_config({"experiment": {"home": name, "default_remote": name},
                          "sites": {name: {"jurisdiction": "SG"}}}, "test")
    try:
        accepted = _names(name)
    except argparse.ArgumentTypeError:
        return
    assert all(n.isidentifier() for n in accepted), accepted


async def _conn(sshd):
    return connection_for(_site(sshd))


async def _sleep(seconds: float) -> None:
    import asyncio
    await asyncio.sleep(seconds)
