"""What a tracked process touches beyond the path globs: resident files under other names,
and the paths named in the commands it starts.

The taint hook (`taint.py`) matches each path a process opens against `policy.resident`.
A hard link, a bind mount or a byte-identical copy of a resident file has another path;
`resident_original` finds it by (device, inode) or, where its size is a resident file's, by
sha256 (`fingerprints.ResidentIndex`). The index is walked again when it is older than a
moment, and never more often than keeps its walks under 2% of the time (a process that
opens files in a tight loop pays a stat and a dict lookup per open, not a walk).

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
from typing import Any, Iterator, Sequence

from .locations import Glob

_REFRESH_SECONDS = 2.0
_WALK_SHARE = 50  # a walk that took W seconds is not repeated within 50 W: walks stay under 2%
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"})
_COMMAND_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn"})
_lock = threading.Lock()
_index: dict[str, Any] = {}  # globs, built (monotonic), walk seconds, index


def resident_original(path: str, globs: Sequence[Glob]) -> str | None:
    """Why the regular file at `path` is resident although its path matches no glob
    (the same file as a resident one, or the same bytes), or None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError, TypeError):
        return None
    if not stat_mod.S_ISREG(st.st_mode) or st.st_size == 0:
        return None  # an empty file holds no one's data, and every empty file has the same hash
    index = _fresh_index(globs)
    match = index.same_file(st)
    if match is None and st.st_size in index.by_size:
        from .fingerprints import local_sha256

        match = index.same_content(st.st_size, lambda: local_sha256(path, st))
    return match.describe(path) if match else None


def _fresh_index(globs: Sequence[Glob]) -> Any:
    from .fingerprints import ResidentIndex, walk_resident  # the index's module loads on first use

    now = time.monotonic()
    with _lock:
        known = _index.get("globs") == globs
        if known and now - _index["built"] < max(_REFRESH_SECONDS, _WALK_SHARE * _index["took"]):
            return _index["index"]
        index = ResidentIndex(walk_resident(globs))
        _index.update(globs=globs, built=now, took=time.monotonic() - now, index=index)
        return index


def forget_index() -> None:
    """Walk the resident files again at the next check (a test, or a policy just changed)."""
    with _lock:
        _index.clear()


def open_folders(path: str) -> list[str]:
    """`path` (relative) joined to each folder this process holds open: where an
    `os.open(path, dir_fd=fd)` may point, since the audit event does not carry the `dir_fd`."""
    found = []
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
    base = os.fsdecode(cwd) if isinstance(cwd, (str, bytes, os.PathLike)) else os.getcwd()
    for word in _words(argv, shell=event == "os.system"):
        for candidate in {word, word.partition("=")[2]} - {""}:
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
