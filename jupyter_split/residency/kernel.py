"""The notebook kernel as a tracked process: `%load_ext jupyter_split` starts the taint hook in it.

A runner's reads of resident data label what its run ships. The notebook kernel runs
the same hook (`taint.start_taint_tracking(process="kernel")`): once it has read resident
data (`open(...).read()`, `pathlib.Path.read_text`, `pd.read_csv`, `np.load`, `np.loadtxt`,
`os.open`, a `mmap` of an opened file, a hard link, bind mount or copy of a resident file,
a labelled checkpoint) any variable in it may hold some, so `--in` of any variable to a
site of another jurisdiction is refused before the first byte (`guard.check_objects` adds
the process's taint), as are pushes and W&B artifacts sent from it. Sites of the home
jurisdiction (`%%on home`) take anything.

The taint ends with the kernel (restart it). A single variable may still leave once its
export is approved: `%split declassify NAME --reason "..."`. `%split policy` shows the
kernel's labels and where each came from.

The cell's code goes abroad too: from a tainted kernel only code typed in the cell being run
may go to another jurisdiction (`check_cell`), not code made at run time from its data.

A run fed `--in` variables holds them: `carried_labels` puts their labels and the kernel's
taint in its request, and the runner taints itself with them, so a home run cannot relay
the kernel's data abroad by its own push.

Processes the kernel forks (multiprocessing and DataLoader workers with the `fork` start
method, `!cmd`) share its labels through a state file in the data directory; the runners
it starts are processes of their own, with their own taint.

Not seen, and so not refused by the taint (the content scanner at the border is the
second line for these):
- reads before the hook existed: when cells ran before `%load_ext jupyter_split`, the
  kernel is tainted from the start (what they read is unknown). Load the extension in
  the first cell, or at start with `c.InteractiveShellApp.extensions = ["jupyter_split"]`.
- a child process's own reads (`subprocess.run(["cat", path])`, a script, a
  `spawn`/`forkserver` worker): only its command line is seen, and a command line that
  names a resident path taints; one that builds the path itself passes.
- native readers that open files without Python's `open` (`pyarrow.parquet.read_table`
  or `pyarrow.csv.read_csv` given a path, polars, a C extension's `fopen`).
- off Linux, an `os.open` relative to a `dir_fd` (the hook is given the relative name
  only; on Linux it is tried against every folder the process holds open).
- the sidebar: the Jupyter server is another process, and shows no kernel's taint;
  `%split policy` in the notebook does.

And not stopped, though seen: a tainted kernel writing straight into a foreign site's
storage (`open` on a mounted path, an fsspec write to its bucket) or talking to a server
abroad itself (`wandb.init` online, a socket). A file it writes is labelled (so no push
of it leaves), but such a write is not the guard's to refuse: send data through
`--in`, `%split push` or `ckpt.save`, which are guarded.
"""
from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import Config, ConfigError, SiteConfig, load_config
from ..paths import data_dir
from .labels import variable_origins
from .taint import describe_state, note_command, run_label_origins, start_taint_tracking, taint_run

# IPython's script magics (its ScriptMagics.script_magics, loaded lazily) and their parent
_SCRIPT_MAGICS = frozenset({"script", "bash", "sh", "perl", "ruby", "python", "python2", "python3", "pypy"})
_MADE_CELL = "a cell made at run time (type its code in the cell to send it)"
_LOAD_FIRST = ("restart the kernel and load the extension in its first cell "
               "(or at start: c.InteractiveShellApp.extensions = [\"jupyter_split\"] in ipython_config.py)")


def start_kernel_tracking(shell: Any) -> None:
    """Track this kernel's reads from now on (a second load keeps the labels it has).

    With a config that cannot be read, the hook starts before the first cell run after
    it is fixed; what ran in between is counted as untracked."""
    if describe_state()["tracking"]:
        return
    try:
        _start(shell)
    except ConfigError as exc:
        print(f"[jupyter_split] this kernel's reads are not tracked until the config can be read: {exc}")

        def retry(*_: Any) -> None:
            try:
                _start(shell)
            except ConfigError:
                return
            shell.events.unregister("pre_run_cell", retry)

        shell.events.register("pre_run_cell", retry)


def _start(shell: Any) -> None:
    config = load_config()
    file = data_dir() / "taint" / f"kernel-{os.getpid()}.jsonl"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"")  # a kernel of the same pid before this one left its labels: not ours
    atexit.register(_remove, file, os.getpid())
    start_taint_tracking(config, state_file=file, process="kernel")
    _watch_script_magics(shell)
    # IPython keeps the result of the last finished execution: any at all ran untracked (and
    # could have read resident data, where the policy names any)
    if config.policy.resident and getattr(shell, "last_execution_result", None) is not None:
        taint_run({config.home.jurisdiction: (
            "code ran in this notebook kernel before jupyter_split tracked its reads "
            f"(`%load_ext jupyter_split` came later, or the config could not be read), so what they read "
            f"is unknown; {_LOAD_FIRST}")})


def carried_labels(values: Mapping[str, Any], to_jurisdiction: str) -> dict[str, str]:
    """What `--in` variables the guard let go to a site of `to_jurisdiction` carry into the run
    they feed (it holds them now): their labels and this process's taint, each origin naming
    the variable. Only that jurisdiction's own: any other label was approved to leave."""
    taint = run_label_origins()
    found: dict[str, str] = {}
    for name, value in values.items():
        for code, why in {**variable_origins(name, value), **taint}.items():
            if code == to_jurisdiction:
                found.setdefault(code, f"the --in variable {name!r} it was given ({why})")
    return found


def check_cell(code: str, options: Iterable[str], site: SiteConfig, config: Config) -> None:
    """From a tainted kernel a cell goes to a site of another jurisdiction only as the user
    typed it: its code and its option values (`--name`, `--out`) must be text of the cell
    being run, since code made at run time (`run_cell_magic(..., repr(d))`) may hold what the
    kernel read. Anything else is refused and audited as kind `cell`."""
    state = describe_state()
    if state.get("process") != "kernel" or all(label == site.jurisdiction for label in state["labels"]):
        return
    typed = _typed_cell()
    if typed is not None and all(part.rstrip() in typed for part in (code, *options) if part):
        return
    from .guard import check_transfer  # the guard imports this package's modules: load it here

    check_transfer(_MADE_CELL, {}, kind="cell", dest="", to_jurisdiction=site.jurisdiction, to_site=site.name,
                   config=config)


def _typed_cell() -> str | None:
    """The raw text of the cell being run (IPython records it before running it)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    history = getattr(getattr(get_ipython(), "history_manager", None), "input_hist_raw", None)
    return history[-1] if history else None


def _watch_script_magics(shell: Any) -> None:
    """`%%bash`, `%%sh`, `%%script ...` feed their cell to a program on stdin, where no audit
    event shows it: a script naming a resident path taints the kernel, as a command line does.
    Every cell magic, typed or called, goes through the shell's `run_cell_magic`."""
    run_cell_magic = getattr(shell, "run_cell_magic", None)
    if run_cell_magic is None or getattr(run_cell_magic, "_split_watched", False):
        return

    def watched(magic_name: str, line: str, cell: str, *args: Any, **kwargs: Any) -> Any:
        magic = shell.find_cell_magic(magic_name)
        if magic_name in _SCRIPT_MAGICS or type(getattr(magic, "__self__", None)).__name__ == "ScriptMagics":
            note_command("os.system", (f"{line}\n{cell}",), verb="ran a shell cell naming")
        return run_cell_magic(magic_name, line, cell, *args, **kwargs)

    watched._split_watched = True  # type: ignore[attr-defined]
    shell.run_cell_magic = watched


def _remove(file: Path, owner: int) -> None:
    if os.getpid() != owner:
        return  # a forked child ending: the kernel's labels are still the kernel's
    try:
        file.unlink()
    except OSError:
        pass
