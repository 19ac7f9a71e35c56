"""What a tracked process touches beyond the path globs: resident files under other names,
and the paths named in the commands it starts.

The taint hook (`taint.py`) matches each path a process opens against `policy.resident`.
A hard link, a bind mount or a byte-identical copy of a resident file has another path;
`resident_original` finds it by (device, inode) or, where its size is a resident file's, by
sha256 (`fingerprints.ResidentIndex`). The first check walks the resident folders; later
the index is walked again in a background thread when it is older than a moment, and
never more often than keeps the walks under 2% of the time, so an open pays a stat and
a dict lookup, never a walk (a resident file made a moment ago is known a walk later).

A child process's own reads are invisible to an audit hook: `cat pii/people.csv` run by
`subprocess` reads nothing in this interpreter. `command_paths` gives the paths a command
line names (argv words, the words of a `sh -c` string, `--opt=PATH` values), so a command
that names a resident file or folder taints the process that started it. It is a net, not
a border: a command that builds the path itself (`cat $(ls)`, a script that reads a fixed
path) passes unseen.
"""
from __future__ import annotations

import os
import shlex
import stat as stat_mod
import threading
import time
from typing import Any, Callable, ContextManager, Iterator, Sequence

from .locations import Glob

_REFRESH_SECONDS = 2.0
_WALK_SHARE = 50  # a walk that took W seconds is not repeated within 50 W: walks stay under 2%
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"})
_COMMAND_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn"})
_lock = threading.Lock()
_index: dict[str, Any] = {}  # globs, built (monotonic), walk seconds, index, walking (a thread is at it)


def resident_original(path: str, globs: Sequence[Glob], untracked: Callable[[], ContextManager[Any]]) -> str | None:
    """Why the regular file at `path` is resident although its path matches no glob
    (the same file as a resident one, or the same bytes), or None. `untracked` marks the
    walk's own reads as the tracker's (in the background thread too)."""
    if not globs:
        return None
    index = _fresh_index(globs, untracked)
    if not len(index):
        return None  # no local resident file (none yet, or only object stores): nothing to stat for
    try:
        st = os.stat(path)
    except (OSError, ValueError, TypeError):
        return None
    if not stat_mod.S_ISREG(st.st_mode) or st.st_size == 0:
        return None  # an empty file holds no one's data, and every empty file has the same hash
    match = index.same_file(st)
    if match is None and st.st_size in index.by_size:
        from .fingerprints import local_sha256

        match = index.same_content(st.st_size, local_sha256(path, st))
    return match.describe(path) if match else None


def _fresh_index(globs: Sequence[Glob], untracked: Callable[[], ContextManager[Any]]) -> Any:
    with _lock:
        if _index.get("globs") != globs:
            _walk(globs)  # the first check, or a new policy: nothing to go by until it is walked
        elif (not _index["walking"] and
              time.monotonic() - _index["built"] >= max(_REFRESH_SECONDS, _WALK_SHARE * _index["took"])):
            _index["walking"] = True
            threading.Thread(target=_walk_in_background, args=(globs, untracked), daemon=True,
                             name="jupyter_split resident index").start()
        return _index["index"]


def _walk_in_background(globs: Sequence[Glob], untracked: Callable[[], ContextManager[Any]]) -> None:
    try:
        with untracked():
            walked = _walked(globs)  # outside the lock: opens go on with the old index meanwhile
        with _lock:
            if _index.get("globs") == globs:
                _index.update(walked)
    finally:
        with _lock:
            _index["walking"] = False


def _walk(globs: Sequence[Glob]) -> None:
    _index.update(_walked(globs), globs=globs, walking=False)


def _walked(globs: Sequence[Glob]) -> dict[str, Any]:
    from .fingerprints import ResidentIndex, walk_resident  # the index's module loads on first use

    start = time.monotonic()
    index = ResidentIndex(walk_resident(globs))
    return {"built": start, "took": time.monotonic() - start, "index": index}


def forget_index() -> None:
    """Walk the resident files again at the next check (a test, or a policy just changed)."""
    with _lock:
        _index.clear()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # the walking thread (not copied) may have held it
    if _index:
        _index["walking"] = False


os.register_at_fork(after_in_child=_after_fork)


def dir_fd_readings(args: tuple[Any, ...]) -> list[str]:
    """For an `open` audit event of `os.open` (mode None) with a relative path: that path
    joined to each folder this process holds open, since `os.open(path, dir_fd=fd)` may
    mean any of them and the event does not carry the `dir_fd`."""
    if args[1] is not None or not isinstance(args[0], (str, bytes)) or os.fsdecode(args[0]).startswith("/"):
        return []
    path = os.fsdecode(args[0])
    found: list[str] = []
    try:
        fds = os.listdir("/proc/self/fd")  # Linux; elsewhere the relative name is read from cwd only
    except OSError:
        return found
    for fd in fds:
        try:
            folder = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if folder.startswith("/") and os.path.isdir(folder):
            found.append(os.path.join(folder, path))
    return found


def is_command(event: str) -> bool:
    """Whether an audit event starts a program (subprocess, os.system, exec, spawn): its words may name files."""
    return event in _COMMAND_EVENTS


def command_paths(event: str, args: tuple[Any, ...]) -> Iterator[str]:
    """The words of a started command that may name a file: absolute or relative paths,
    `--opt=PATH` values, and the words of a shell's `-c` string, resolved against its `cwd`."""
    cwd = None
    if event == "subprocess.Popen":  # (executable, args, cwd, env)
        argv, cwd = args[1], args[2] if len(args) > 2 else None
    elif event in ("os.system", "pty.spawn"):  # (command,) / (argv,)
        argv = args[0]
    elif event == "os.spawn":  # (mode, path, args, env)
        argv = args[2] if len(args) > 2 else ()
    else:  # os.exec, os.posix_spawn: (path, args, env)
        argv = args[1] if len(args) > 1 else ()
    bases = [os.fsdecode(cwd) if isinstance(cwd, (str, bytes, os.PathLike)) else os.getcwd()]
    words = _words(argv, shell=event == "os.system")
    for i, word in enumerate(words):
        if i and words[i - 1] in ("cd", "pushd"):  # a script that moves names paths from there on
            bases.append(os.path.join(bases[-1], os.path.expanduser(word)))
        for candidate in {word, word.partition("=")[2]} - {""}:
            for base in bases:
                path = os.path.join(base, os.path.expanduser(candidate))
                if "/" in candidate or os.path.lexists(path):
                    yield path


def _words(argv: Any, shell: bool) -> list[str]:
    if isinstance(argv, (str, bytes, os.PathLike)):
        argv = [argv]  # a string command (shell=True, or a program name)
        shell = True
    words = [os.fsdecode(a) for a in argv if isinstance(a, (str, bytes, os.PathLike))]
    if words and os.path.basename(words[0]) in _SHELLS:
        shell = True
    if not shell:
        return words
    found = []
    for word in words:
        try:
            found += shlex.split(word, comments=True)
        except ValueError:  # an unbalanced quote: plain words are still words
            found += word.split()
    # `a;b`, `a|b`, `<file`: shlex keeps shell operators inside words
    return [part for word in found for part in _split_operators(word)]


def _split_operators(word: str) -> list[str]:
    for op in (";", "|", "&", "<", ">", "(", ")", "`", "$("):
        word = word.replace(op, " ")
    return word.split()
