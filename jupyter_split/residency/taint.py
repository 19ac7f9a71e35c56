"""Taint inside a runner: a run that reads resident data carries the home label.

`start_taint_tracking` installs a PEP 578 audit hook that sees every file the
interpreter opens, lists, copies or renames, and wraps fsspec's read and write methods
so object-store traffic (which opens no local file) is seen too. The first read of a
resident location, or of a file inside a labelled checkpoint, labels the run;
`run_labels()` then stamps whatever the run ships, and every file the run wrote is
listed with its labels (`produced`), so it stays labelled after the run ends.

A hard link, bind mount or copy of a resident file is found by identity or content, and
a command naming a resident path taints (`reads.py`; a child's own reads are not seen).

Reads by native code that bypasses Python's `open` (e.g. Arrow's C++ filesystem,
Rust readers) are not seen: call `taint_run` where such a reader is used, as
`ckpt.load` and the sync engine do for labelled checkpoints.

The notebook kernel is tracked the same way (`kernel.py`, from `%load_ext jupyter_split`).
"""
from __future__ import annotations

import functools
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..config import Config, SiteConfig, load_config
from .audit import append_record, declassified_path, read_records
from .busy import BUSY, busy, untracked
from .checkpoint_labels import LIBRARIES, checkpoint_origins
from .labels import collect
from .locations import Glob, compile_globs, first_match, os_path_readings, readings, resolved
from .produced import produced_path, record_produced
from .reads import command_paths, dir_fd_readings, is_command, resident_original

TAINT_FILE_ENV = "JUPYTER_SPLIT_TAINT_FILE"
SITE_ENV = "JUPYTER_SPLIT_SITE"
RUN_ID_ENV = "JUPYTER_SPLIT_RUN_ID"
_EVENTS = frozenset({
    "open", "os.listdir", "os.scandir", "glob.glob", "shutil.copyfile", "shutil.copytree",
    "os.link", "os.rename", "sqlite3.connect",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn",
})
_WATCHED = ("_open", "cat_file", "_cat_file", "get_file", "_get_file", "cat_ranges", "_cat_ranges",
            "pipe_file", "_pipe_file", "put_file", "_put_file")


@dataclass
class _State:
    config: Config
    globs: Sequence[Glob]
    home: str
    site: str | None
    run_id: str | None
    state_file: Path | None
    manifest_name: str
    own_files: frozenset[str]
    labels: dict[str, str] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)  # what this process wrote: labelled once it is tainted
    process: str = "run"  # or "kernel": the notebook's own interpreter


_state: _State | None = None
_hook_installed = False


def start_taint_tracking(
    config: Config | None = None,
    *,
    site: str | None = None,
    run_id: str | None = None,
    state_file: str | os.PathLike[str] | None = None,
    process: str = "run",
) -> None:
    """Watch this process's reads; `state_file` shares the run's labels with its child processes.

    `process="kernel"` for the notebook kernel: its labels are shared with the processes it
    forks only (the runners it starts are other processes, with taint of their own)."""
    global _state, _hook_installed
    from ..sync.manifest import MANIFEST_NAME  # here, not at import: sync imports this package

    config = config or load_config()
    file = state_file or os.environ.get(TAINT_FILE_ENV)
    if file and process == "run":
        os.environ[TAINT_FILE_ENV] = str(file)  # worker processes of the run join the same taint
    site = site or os.environ.get(SITE_ENV)
    if site:
        config.site(site)  # an unknown name fails here, clearly, not at the first push
        os.environ[SITE_ENV] = site
    _state = _State(
        config=config,
        globs=compile_globs(config.policy.resident),
        home=config.home.jurisdiction,
        site=site,
        run_id=run_id,
        state_file=Path(file) if file else None,
        manifest_name=MANIFEST_NAME,
        process=process,
        own_files=frozenset(os.path.realpath(p) for p in (
            config.audit_log_path(), declassified_path(config), produced_path(config), *([file] if file else []))),
    )
    if not _hook_installed:
        sys.addaudithook(_hook)  # audit hooks cannot be removed: install once, switch by `_state`
        _hook_installed = True
    _watch_fsspec()


def stop_taint_tracking() -> None:
    """Forget this process's taint (the hook stays, idle)."""
    global _state
    _state = None


def taint_run(labels: Mapping[str, str] | Iterable[str], origin: str = "") -> None:
    """Label the current run (a pulled or loaded labelled checkpoint); no-op when not tracking."""
    state = _state
    if state is None:
        return
    entries = dict(labels) if isinstance(labels, Mapping) else {code: origin for code in labels}
    new = {code: why or origin for code, why in entries.items() if code not in state.labels}
    if not new:
        return
    state.labels.update(new)
    with untracked():  # these writes are the tracker's own, not the run's
        if state.state_file is not None:
            append_record(state.state_file, {"labels": new, "run_id": state.run_id, "pid": os.getpid()})
        # what the run wrote before it read labelled data may be written on after: label it too
        record_produced(state.config, state.written, state.labels, current_run_id())


def run_label_origins() -> dict[str, str]:
    """This run's labels and where each came from, its worker processes included."""
    state = _state
    if state is None:
        return {}
    found = dict(state.labels)
    if state.state_file is not None:
        for record in read_records(state.state_file):
            for code, origin in dict(record.get("labels") or {}).items():
                found.setdefault(str(code), str(origin))
    return found


def run_labels() -> set[str]:
    """The jurisdictions this run's taint holds, its worker processes included."""
    return set(run_label_origins())


def outputs_labels(values: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """For shipping `--out` variables: each one's labels, the run's taint included."""
    taint = run_label_origins()
    return {name: {**collect(value), **taint} for name, value in values.items()}


def local_site(config: Config) -> SiteConfig:
    """The site this process runs on: the runner's site, else home (where the notebook is)."""
    state = _state
    name = (state.site if state else None) or os.environ.get(SITE_ENV)
    return config.site(name) if name else config.home


def _note(path: Any, how: str, local: bool = True, verb: str = "read", identity: bool = False) -> None:
    """Taint the run if `path` is resident (or, with `identity`, the same file or bytes as a
    resident file) or part of a labelled checkpoint."""
    state = _state
    if state is None or isinstance(path, (int, type(None))):
        return
    try:
        text = os.fsdecode(path)
        glob = same = None
        if state.home not in state.labels:
            # the OS decodes nothing in a path it opens; an fsspec URL may mean more than one place
            found_at = os_path_readings(text) if local else readings(text)
            glob = first_match(found_at, state.globs, contains=False)
            if glob is None and identity:
                same = resident_original(text, state.globs, untracked)
        found = checkpoint_origins(text, state.manifest_name) if local else {}
    except Exception:  # noqa: BLE001 - an unreadable path must taint, not vanish
        taint_run({state.home: f"a {how} of {path!r}, which the residency hook could not interpret"})
        return
    run, clear = _who(state)
    if glob is not None:
        taint_run({state.home: f"{run} {verb} {text} (policy.resident {glob.text!r}){clear}"})
    elif same is not None:
        taint_run({state.home: f"{run} {verb} {text}: {same}{clear}"})
    if found:
        taint_run({code: f"{run} {verb} {text}, {why}{clear}" for code, why in found.items()})


def _who(state: _State) -> tuple[str, str]:
    """Who read, and (for a kernel, whose taint covers every variable in it) how that ends."""
    if state.process == "kernel":
        return ("this notebook kernel",
                "; any variable of this kernel may hold it (restart the kernel to clear its taint)")
    run_id = current_run_id()
    return (f"run {run_id}" if run_id else "this run"), ""


def _writes(mode: Any, flags: Any) -> bool:
    if isinstance(flags, int) and flags >= 0:
        return flags & os.O_ACCMODE != os.O_RDONLY
    return isinstance(mode, str) and any(c in mode for c in "wax+")


def _wrote(path: Any, local: bool) -> None:
    """Remember a written file; once the run is tainted it is listed with the run's labels."""
    state = _state
    if state is None or isinstance(path, (int, type(None))):
        return
    try:
        text = os.fsdecode(path)
        where = resolved(text) if local else text
    except (ValueError, OSError, TypeError):
        return
    if where in state.written or where in state.own_files or (local and where.startswith(LIBRARIES)):
        return
    state.written.add(where)
    if state.labels:
        record_produced(state.config, [where], state.labels, current_run_id())


def _reads(mode: Any, flags: Any) -> bool:
    if isinstance(flags, int) and flags >= 0:
        return flags & os.O_ACCMODE != os.O_WRONLY
    return not isinstance(mode, str) or "r" in mode or "+" in mode


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS or _state is None or busy():
        return
    BUSY.active = True
    try:
        if event == "open":
            flags = args[2] if len(args) > 2 else None
            if _reads(args[1], flags):
                _note(args[0], "file open", identity=True)
                for path in dir_fd_readings(args):
                    _note(path, "file open", identity=True)
            if _writes(args[1], flags):
                _wrote(args[0], local=True)
        elif event in ("os.rename", "os.link"):
            _note(args[0], event)
            _wrote(args[1], local=True)
        elif is_command(event):
            note_command(event, args)
        else:
            _note(args[0], event)
    finally:
        BUSY.active = False


def note_command(event: str, args: tuple[Any, ...], verb: str = "ran a command naming") -> None:
    """Taint this process if a command it starts names a resident path: the arguments of a
    command audit event (`subprocess.Popen`, `os.system`, ...), or a script given as
    `("os.system", (script,))`. What the command itself reads is not seen (`reads.py`)."""
    state = _state
    if state is None:
        return
    try:
        paths = list(command_paths(event, args))
    except Exception:  # noqa: BLE001 - a command the hook cannot read must taint, not pass
        taint_run({state.home: f"a command ({event} {args[:2]!r}) the residency hook could not read"})
        return
    for path in paths:
        _note(path, event, verb=verb)


def _watch_fsspec() -> None:
    try:
        from fsspec.spec import AbstractFileSystem
    except ImportError:
        return
    if getattr(AbstractFileSystem, "_split_watched", False):
        return
    pending = [AbstractFileSystem]
    while pending:
        cls = pending.pop()
        _wrap_class(cls)
        pending.extend(cls.__subclasses__())

    def init_subclass(cls: type, **kwargs: Any) -> None:
        super(AbstractFileSystem, cls).__init_subclass__(**kwargs)
        _wrap_class(cls)

    AbstractFileSystem.__init_subclass__ = classmethod(init_subclass)  # filesystems imported later
    AbstractFileSystem._split_watched = True


def _wrap_class(cls: type) -> None:
    for name in _WATCHED:
        func = cls.__dict__.get(name)
        if callable(func) and not getattr(func, "_split_watched", False):
            setattr(cls, name, _watched(func, name))


def _watched(func: Any, name: str) -> Any:
    if inspect.iscoroutinefunction(func):
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            _fsspec_seen(self, name, args, kwargs)
            return await func(self, *args, **kwargs)
    else:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            _fsspec_seen(self, name, args, kwargs)
            return func(self, *args, **kwargs)
    functools.update_wrapper(wrapper, func)
    wrapper._split_watched = True
    return wrapper


def _fsspec_seen(fs: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if _state is None or busy():
        return
    BUSY.active = True  # the files this opens itself (the register, manifests) are not the run's
    try:
        _fsspec_call(fs, name, args, kwargs)
    finally:
        BUSY.active = False


def _fsspec_call(fs: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name.lstrip("_") == "put_file":  # (lpath, rpath): a write to the store
        _wrote(_url(fs, args[1] if len(args) > 1 else kwargs.get("rpath")), local=False)
        return
    target = args[0] if args else kwargs.get("path", kwargs.get("rpath", kwargs.get("paths")))
    mode = args[1] if name == "_open" and len(args) > 1 else kwargs.get("mode", "rb")
    if name.lstrip("_") == "pipe_file" or (name == "_open" and _writes(mode, None)):
        _wrote(_url(fs, target), local=False)
        return
    for path in target if isinstance(target, (list, tuple)) else [target]:
        _note(_url(fs, path), "fsspec read", local=False)


def _url(fs: Any, path: Any) -> Any:
    try:
        return fs.unstrip_protocol(path)
    except Exception:  # noqa: BLE001 - fall back to the path as given
        return path


def describe_state() -> dict[str, Any]:
    """For `%split policy`: whether this process tracks taint, and its labels."""
    state = _state
    if state is None:
        return {"tracking": False}
    return {"tracking": True, "process": state.process, "site": state.site, "run_id": current_run_id(),
            "labels": run_label_origins()}


def current_run_id() -> str | None:
    """The run this process executes: given at start, else the cell's (a session runs many)."""
    state = _state
    if state is None:
        return None
    return state.run_id or os.environ.get(RUN_ID_ENV)

