"""`python -m jupyter_split.demo` (the README's `make demo`): the split-training story, headless.

Executes `notebooks/02-split-training.ipynb` with nbclient on the built-in two-site
default (`abroad`, SG, and `home`, CN, both on this machine), in a fresh data directory
under `demo-output/`, so nothing of the user's (config, runs, checkpoints, audit log) is
read or touched. Writes the executed notebook there and prints what happened.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import SplitError
from .executors.base import SOCKET_PATH_MAX

NOTEBOOK = Path("notebooks") / "02-split-training.ipynb"
OUTPUT = Path("demo-output")
MARKER = ".jupyter-split-demo"  # a data directory the demo made, and so may delete
SOCKET_ROOM = len("/sites/abroad/sock/0123abcd")  # where the default sites put their sessions' sockets


class DemoError(SplitError, RuntimeError):
    """The demo cannot run as asked; the message says what to do."""


def fresh_data_dir(output: Path) -> Path:
    """`output/data`, emptied if an earlier demo made it; never a folder the demo did not make."""
    data = output / "data"
    if data.exists():
        if not (data / MARKER).exists():
            raise DemoError(f"{data} exists and was not made by the demo: move it away or pass another --output")
        shutil.rmtree(data)
    data.mkdir(parents=True)
    (data / MARKER).write_text("made by python -m jupyter_split.demo; deleted by its next run\n")
    return data


def short_alias(data: Path) -> Path:
    """A path for `data` short enough for the sessions' unix sockets (about 100 bytes at most)."""
    if len(str(data)) + SOCKET_ROOM < SOCKET_PATH_MAX:
        return data
    link = Path(tempfile.mkdtemp(prefix="split-demo-")) / "d"
    link.symlink_to(data, target_is_directory=True)
    return link


def default_config_toml() -> str:
    """The built-in default written out, for when a config file elsewhere would be found instead."""
    from .config import default_config

    config = default_config()
    lines = ["# The built-in two-site default, written out by the demo so that no other config applies.",
             "[experiment]", f"name = {json.dumps(config.experiment.name)}",
             f"home = {json.dumps(config.experiment.home)}", f"default_remote = {json.dumps(config.experiment.default_remote)}"]
    for site in config.sites.values():
        lines += ["", f"[sites.{site.name}]", f"executor = {json.dumps(site.executor)}",
                  f"jurisdiction = {json.dumps(site.jurisdiction)}", f"storage = {json.dumps(site.storage)}"]
    lines += ["", "[policy]", f"resident = {json.dumps(config.policy.resident)}"]
    return "\n".join(lines) + "\n"


def isolate(output: Path, notebook_dir: Path) -> Path:
    """Point this process (and so the kernel it starts) at a fresh data directory and the default config."""
    from .config import find_config_file

    data = fresh_data_dir(output)
    os.environ["JUPYTER_SPLIT_DATA"] = str(short_alias(data))
    os.environ["WANDB_MODE"] = "offline"
    os.environ.pop("JUPYTER_SPLIT_CONFIG", None)
    found = find_config_file(notebook_dir)
    if found is not None:
        written = output / "jupyter_split.toml"
        written.write_text(default_config_toml())
        os.environ["JUPYTER_SPLIT_CONFIG"] = str(written.resolve())
        print(f"(a config file exists at {found}; the demo ignores it and uses the built-in default, "
              f"written out to {written})")
    return data


def execute(path: Path, output_path: Path, timeout: float, kernel_name: str = "python3") -> Any:
    """Run every cell of the notebook at `path` in a new kernel (working directory: the notebook's folder)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    try:
        client.execute()
    except CellExecutionError as exc:
        raise DemoError(f"a cell of {path} failed; the executed notebook up to it is {output_path}\n{exc}") from None
    finally:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output_path)
    return nb


def summary_of(nb: Any) -> dict[str, Any]:
    """The JSON the notebook's last cell (tagged `summary`) displays."""
    for cell in nb.cells:
        if "summary" in cell.get("metadata", {}).get("tags", []):
            for out in cell.get("outputs", []):
                if "application/json" in out.get("data", {}):
                    return out["data"]["application/json"]
    raise DemoError("the notebook ran but shows no summary (a cell tagged `summary` displaying JSON)")


def stop_sessions() -> None:
    """End the sites' session runners the notebook started (they would otherwise idle until their timeout)."""
    from . import aio
    from .core.split import Split

    split = Split()
    for name in split.config.sites:
        handle = split.index.session(name)
        if handle:
            aio.run(split.executor(name).signal(handle, "TERM"))
            split.index.set_session(name, None)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n:,} bytes"


def report(summary: dict[str, Any], notebook: Path, data: Path, seconds: float) -> str:
    """The demo's closing text: where each phase ran, the losses, what was synced home, what the guard
    refused and allowed, the W&B runs, and where the files are."""
    lines = [f"jupyter_split demo: experiment {summary['experiment']!r}, {seconds:.0f} s", "", "where each phase ran:"]
    for phase, where in summary["phases"].items():
        lines.append(f"  {phase:10} site {where['site']!r} ({where['jurisdiction']}), {where['state']}, run {where['run']}")
    lines += ["", "losses (first -> last):"]
    for phase, (first, last) in summary["losses"].items():
        lines.append(f"  {phase:10} {first:.3f} -> {last:.3f}")
    pulled = summary["pulled"]
    lines += ["", f"synced home: {pulled['files']} files, {_mb(pulled['bytes'])}, {pulled['verified']} verified",
              f"  {pulled['from']}", f"  -> {pulled['to']}"]
    lines += ["", f"refused by the residency guard: {len(summary['refused'])}"]
    for refusal in summary["refused"]:
        lines.append(f"  {refusal['kind']:10} {refusal['item']} -> {refusal['to']}")
    lines.append(f"allowed crossings: {len(summary['allowed'])} (audit log: {summary['audit_log']})")
    runs = summary["wandb"]["runs"]
    lines += ["", f"W&B (offline), group {summary['wandb']['group']!r}: "
              + ", ".join(f"{r['job_type']}@{r['site']}" for r in runs)]
    lines += ["", f"executed notebook: {notebook}", f"data directory (runs, checkpoints, audit log): {data}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The demo's command line; returns the exit status: 0 done, 1 the demo or a cell failed, 2 no notebook."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_split.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK, help=f"the notebook to run (default: {NOTEBOOK})")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where results go (default: {OUTPUT}/)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one cell may take (default 900)")
    args = parser.parse_args(argv)
    notebook: Path = args.notebook
    if not notebook.is_file():
        print(f"jupyter_split demo: {notebook} not found. The notebooks ship in the source repository, not in the "
              "installed package: run the demo from the repository's root (`make demo`), or pass --notebook PATH.",
              file=sys.stderr)
        return 2
    output = args.output.resolve()
    executed = output / notebook.name
    started = time.monotonic()
    try:
        data = isolate(output, notebook.parent)
        print(f"running {notebook} on the built-in sites `abroad` (SG) and `home` (CN), data in {data} ...", flush=True)
        try:
            nb = execute(notebook, executed, args.timeout)
        finally:
            stop_sessions()
        print(report(summary_of(nb), executed, data, time.monotonic() - started))
    except DemoError as exc:
        print(f"jupyter_split demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
