"""The wheel carries the built sidebar: installed in a fresh venv, JupyterLab lists it enabled, no node needed."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from jupyter_split import __version__

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(argv: list, **kwargs) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # without terminal colours


def test_fresh_venv_gets_the_enabled_labextension_and_server_extension(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # The build hook builds the labextension with jlpm when the tree has none yet.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, REPO])
    [wheel] = dist.glob("jupyter_split-*.whl")

    venv = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel])
    # jupyterlab and jupyter_split's own dependencies come from this environment through a path entry,
    # so no registry is needed; jupyter_split itself comes only from the wheel.
    fresh_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (fresh_site / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
    env.update(HOME=str(tmp_path / "home"), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
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
