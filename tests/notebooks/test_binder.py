"""The binder/ files: a fresh virtual environment, postBuild run in it, then 01 executed there.

There is no conda here, so environment.yml's conda layer (python, a CPU torch, JupyterLab,
node) is stood in for by this checkout's environment, made visible to the fresh venv through
a .pth file; everything postBuild does (install the package with the sidebar, enable the
server extension, register the kernel, write the Lab settings) runs for real in the venv.
"""
from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"

pytestmark = pytest.mark.slow
CONDA_LAYER_COMMANDS = {"jupyter-core", "jupyter-server", "jupyterlab", "ipykernel"}

EXECUTE_01 = """
import sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[3])
"""


def test_environment_yml_asks_for_a_cpu_torch_and_what_the_package_needs():
    env = yaml.safe_load((BINDER / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    names = {str(d).split("=")[0].split(">")[0].split("<")[0] for d in env["dependencies"] if isinstance(d, str)}
    assert {"python", "pytorch-cpu", "jupyterlab", "nodejs", "pip"} <= names
    assert not {"pytorch", "pytorch-gpu", "cudatoolkit", "cuda-version"} & names  # no CUDA build of several GB
    python = next(d for d in env["dependencies"] if str(d).startswith("python="))
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert required == ">=3.11" and tuple(map(int, python.split("=")[1].split("."))) >= (3, 11)


def test_postbuild_in_a_fresh_venv_then_the_quickstart_runs(split_home):
    venv = split_home / "binder-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    purelib = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the stand-in for environment.yml's conda packages: this environment's site-packages, after the venv's own
    Path(purelib, "conda-layer-stand-in.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    for script in entry_points(group="console_scripts"):  # and the commands conda would put in the env's bin/
        if script.dist and script.dist.name.replace("_", "-") in CONDA_LAYER_COMMANDS:
            wrapper = venv / "bin" / script.name
            module, func = script.value.split(":")
            wrapper.write_text(f"#!{vpy}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
            wrapper.chmod(0o755)
    lab_app = Path(sys.prefix, "share", "jupyter", "lab")  # and JupyterLab's built application
    (venv / "share" / "jupyter" / "lab").mkdir(parents=True)
    for part in ("static", "schemas", "themes"):
        (venv / "share" / "jupyter" / "lab" / part).symlink_to(lab_app / part)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)

    built = subprocess.run(["bash", str(BINDER / "postBuild")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "config: built-in default" in built.stdout and "abroad" in built.stdout

    where = subprocess.run([str(vpy), "-c", "import jupyter_split; print(jupyter_split.__file__)"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv), f"postBuild did not install the package into the venv: {where}"
    server = subprocess.run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], env=env,
                            capture_output=True, text=True, timeout=120)
    listed = re.sub(r"\x1b\[[0-9;]*m", "", server.stdout + server.stderr)
    assert f"Config dir: {venv}/etc/jupyter\n    jupyter_split enabled" in listed  # enabled in the venv, by postBuild
    lab = subprocess.run([str(venv / "bin" / "jupyter"), "labextension", "list"], env=env,
                         capture_output=True, text=True, timeout=120)
    listed = re.sub(r"\x1b\[[0-9;]*m", "", lab.stdout + lab.stderr)
    assert re.search(rf"{venv}/share/jupyter/labextensions\n\s+jupyterlab-split v\S+ enabled OK", listed), listed
    assert "Build recommended" not in listed  # the prebuilt sidebar is all JupyterLab needs: no `jupyter lab build`
    overrides = json.loads((venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    kernel = json.loads((venv / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").read_text())
    assert Path(kernel["argv"][0]).parent == venv / "bin"

    executed = split_home / "01-executed.ipynb"
    ran = subprocess.run([str(vpy), "-c", EXECUTE_01, str(ROOT / "notebooks" / "01-quickstart.ipynb"),
                          str(ROOT / "notebooks"), str(executed)], env=env, capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    shown = json.dumps(json.loads(executed.read_text())["cells"])
    assert "hello from abroad (SG)" in shown and "back in the notebook: 385" in shown and "answer: 42" in shown
