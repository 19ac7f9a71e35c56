"""Bootstrap over SFTP into an empty venv on the site, with no package index, in a hostile workdir."""
from __future__ import annotations

import json
import platform
import pwd
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from jupyter_split import aio, core
from jupyter_split.ssh import bootstrap, wheelhouse
from jupyter_split.config import parse_config

pytestmark = pytest.mark.slow

HOSTILE = "w d;$(touch PWNED)`touch PWNED`'\"|&"


def split_for(sshd, **overrides) -> core.Split:
    raw = {"experiment": {"name": "t", "home": "home", "default_remote": "sg"},
           "sites": {"sg": sshd.site(**overrides), "home": {"jurisdiction": "CN"}}}
    return core.Split(parse_config(raw, "test"))


def test_bootstrap_into_an_empty_venv_without_index(sshd, split_home, capfd):
    # A short root: the runner's unix socket path must fit in sun_path.
    root = Path(tempfile.mkdtemp(prefix="jsb-", dir="/tmp"))
    try:
        empty = root / "bare"
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(empty)],
                       check=True, capture_output=True)
        workdir = root / HOSTILE
        split = split_for(sshd, python=str(empty / "bin" / "python"), workdir=str(workdir))
        ex = split.executor("sg")

        report = aio.run(ex.doctor())
        assert "installing jupyter_split" in capfd.readouterr().err, "the first install must say why it waits"
        assert report["python_version"] == platform.python_version()
        assert report["jupyter_split"] is None, "the bare venv must start without jupyter_split"
        assert report["installed_now"] and report["status"] == "ok" and report["venv_current"]
        assert ex.python == report["runner_python"] == str(workdir / "env" / "venv" / "bin" / "python")
        marker = json.loads((workdir / "env" / "installed.json").read_text())
        shipped = {d.split("==")[0] for d in marker["dependencies"]}
        assert {"ipython", "pydantic", "pydantic-core", "cloudpickle", "fsspec", "tqdm"} <= shipped

        seen: list[dict] = []
        namespace = {"numbers": [1, 2, 3]}
        outcome = split.execute("import jupyter_split, IPython, sys\nprint(jupyter_split.__file__)\ntotal = sum(numbers)",
                                core.CellOptions(site="sg", inputs=["numbers"], outputs=["total"]), namespace, seen.append)
        assert outcome.state == "succeeded", seen
        printed = "".join(e["text"] for e in seen if e["type"] == "stream")
        assert printed.startswith(str(workdir / "env" / "venv")), printed
        assert namespace["total"] == 6

        again = aio.run(bootstrap.doctor(ex))
        assert again["status"] == "ok" and not again["installed_now"]

        # A different build here (another fingerprint on record) is reinstalled, not trusted.
        marker["fingerprint"] = "0" * 64
        (workdir / "env" / "installed.json").write_text(json.dumps(marker))
        assert aio.run(bootstrap.doctor(ex))["installed_now"]
        assert json.loads((workdir / "env" / "installed.json").read_text())["fingerprint"] == wheelhouse.source_fingerprint()

        home = Path(pwd.getpwuid(os.getuid()).pw_dir)
        assert not list(root.rglob("PWNED")) and not (home / "PWNED").exists(), "a path was run as a command"
        aio.run(ex.close())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_project_wheel_holds_the_whole_package(tmp_path):
    import zipfile

    import jupyter_split

    package = Path(jupyter_split.__file__).parent
    wanted = {p.relative_to(package.parent).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    with zipfile.ZipFile(wheelhouse.project_wheel(tmp_path).path) as wheel:
        names = set(wheel.namelist())
    assert wanted <= names, sorted(wanted - names)[:5]
    assert {"jupyter_split/runner/__main__.py", "jupyter_split/protocol.py", "jupyter_split/ssh/wheelhouse.py"} <= names


def test_site_python_that_does_not_exist_is_named(sshd, split_home, tmp_path):
    split = split_for(sshd, python="/nowhere/bin/python3", workdir=str(tmp_path / "w"))
    report = aio.run(bootstrap.doctor(split.executor("sg")))
    assert report["python_version"] is None and "/nowhere/bin/python3" in report["status"]
    with pytest.raises(Exception, match=r"cannot run '/nowhere/bin/python3'.*Set `python`"):
        split.execute("print(1)", core.CellOptions(site="sg"), {}, lambda e: None)


def test_a_binary_wheel_the_site_cannot_use_is_refused_by_name(tmp_path):
    with pytest.raises(wheelhouse.WheelError, match="pydantic_core|pydantic-core") as err:
        wheelhouse.dependency_wheels(["pydantic-core"], tmp_path, {"cp39-cp39-win_amd64"}, "'sg'")
    assert "pip download" in str(err.value) and str(tmp_path / "extra") in str(err.value)


def test_two_notebooks_starting_at_once_install_once(sshd, split_home, capfd):
    import asyncio
    import threading

    from jupyter_split.executors.ssh import SshExecutor

    root = Path(tempfile.mkdtemp(prefix="jsc-", dir="/tmp"))
    try:
        config = parse_config({"experiment": {"home": "sg", "default_remote": "sg"},
                               "sites": {"sg": sshd.site(workdir=str(root))}}, "test")
        # A lock left by an install that died long ago must not block anyone.
        stale = root / "env" / "installing.lock"
        stale.mkdir(parents=True)
        os.utime(stale, (0, 0))
        pythons: list[str] = []
        errors: list[BaseException] = []

        def notebook() -> None:
            # Its own event loop, so its own SSH connection: like a second kernel.
            try:
                pythons.append(asyncio.run(bootstrap.ensure_installed(SshExecutor(config.sites["sg"], config))))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=notebook) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert not errors, errors
        assert pythons == [str(root / "env" / "venv" / "bin" / "python")] * 2
        assert capfd.readouterr().err.count("installing jupyter_split") == 1
        assert not stale.exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
