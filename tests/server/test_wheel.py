"""The wheel in a fresh venv: it carries the built sidebar (JupyterLab lists it enabled, no node needed),
and with the `server` extra the `jupyter split` form of the command works."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name

from jupyter_split import __version__
from jupyter_split.ssh import wheelhouse

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(argv: list, **kwargs) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # without terminal colours


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    # The build hook builds the labextension with jlpm when the tree has none yet.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, REPO])
    [built] = dist.glob("jupyter_split-*.whl")
    return built


def _clean_env(home: Path, venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return env


def test_fresh_venv_gets_the_enabled_labextension_and_server_extension(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel])
    # jupyterlab and jupyter_split's own dependencies come from this environment through a path entry,
    # so no registry is needed; jupyter_split itself comes only from the wheel.
    fresh_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (fresh_site / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = _clean_env(tmp_path / "home", venv)
    where = _run([python, "-c", "import jupyter_split; print(jupyter_split.__file__)"], env=env, cwd=tmp_path)
    assert where.strip().startswith(str(fresh_site)), f"jupyter_split came from {where.strip()}, not the wheel"

    labextensions = _run([python, "-m", "jupyterlab.labextensions", "list"], env=env, cwd=tmp_path)
    assert "jupyterlab-split v0.1.0 enabled OK" in labextensions, labextensions
    assert str(venv / "share" / "jupyter" / "labextensions") in labextensions
    assert (venv / "share/jupyter/labextensions/jupyterlab-split/static/style.js").is_file()

    servers = _run([python, "-m", "jupyter_server.extension.serverextension", "list"], env=env, cwd=tmp_path)
    # Enabled by the config file the wheel put in the venv, and importable from it (validated).
    section = servers.split(f"Config dir: {venv / 'etc' / 'jupyter'}")[-1].split("Config dir:")[0]
    assert "jupyter_split enabled" in section, servers
    assert f"jupyter_split {__version__} OK" in section, servers


def _requirements(wheel: Path, extra: str) -> list[Requirement]:
    """What installing `wheel[extra]` asks for: its dependencies and the extra's, markers evaluated."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode())
    env = default_environment()
    wanted = []
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({**env, "extra": extra}):
            req.marker = None  # evaluated: what is left holds for this install
            wanted.append(req)
    return wanted


def _closure(requirements: list[Requirement]) -> list[str]:
    """Every distribution those requirements reach (extras of dependencies followed), as installed here."""
    env = default_environment()
    extras_of: dict[str, set[str]] = {}
    queue = [(req, "") for req in requirements]
    while queue:
        req, extra = queue.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        new = set(req.extras) - extras_of.get(name, set())
        if name in extras_of and not new:
            continue
        first = name not in extras_of
        extras_of.setdefault(name, set()).update(req.extras)
        own = [Requirement(r) for r in metadata.distribution(name).requires or []]
        for wanted in ([""] if first else []) + sorted(new):
            queue += [(r, wanted) for r in own]
    return sorted(extras_of)


def test_server_extra_brings_the_jupyter_split_subcommand(wheel: Path, tmp_path: Path) -> None:
    # The README promises `jupyter split VERB` with the `server` extra: it names jupyter_core (the
    # `jupyter` command, which finds the `jupyter-split` script on PATH) itself.
    server_only = {canonicalize_name(r.name) for r in _requirements(wheel, "server")} - {
        canonicalize_name(r.name) for r in _requirements(wheel, "")}
    assert "jupyter-core" in server_only, f"the server extra asks for {sorted(server_only)}, not jupyter_core"

    # A real install of jupyter_split[server] from the wheel, resolved by pip with no registry: every
    # dependency is a wheel repacked from this environment's installed copy (as for an SSH site).
    names = _closure(_requirements(wheel, "server"))
    wheelhouse.dependency_wheels(names, tmp_path / "wheels", {str(t) for t in sys_tags()}, "the test venv")
    venv = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", venv])
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
          "--no-index", "--find-links", tmp_path / "wheels" / "deps", f"{wheel}[server]"])
    assert (venv / "bin" / "jupyter").is_file() and (venv / "bin" / "jupyter-split").is_file()

    # Only the venv's own commands: no `jupyter` from this environment on PATH.
    env = _clean_env(tmp_path / "home", venv)
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin", JUPYTER_SPLIT_DATA=str(tmp_path / "data"))
    usage = _run(["jupyter", "split", "--help"], env=env, cwd=tmp_path)
    assert "usage: jupyter-split" in usage and "push" in usage and "sites" in usage, usage
    sites = _run(["jupyter", "split", "sites"], env=env, cwd=tmp_path)  # a verb, on the built-in default
    assert "config: built-in default" in sites and re.search(r"^abroad\s+local\s+SG", sites, re.M), sites
