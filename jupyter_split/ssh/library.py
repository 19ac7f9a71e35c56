"""asyncssh, imported without spawning the C toolchain: `from jupyter_split.ssh.library import asyncssh`.

At import, asyncssh looks for liboqs (post-quantum key exchange) with `ctypes.util.find_library`,
twice. On Linux a name it cannot find costs `ldconfig -p`, then `gcc`, then `ld`, each a process:
about 30 ms of every process's first SSH connection, a tenth of a `jupyter-split push` that has
nothing to send. While asyncssh is imported, a name that is in neither the loader's cache nor a
folder the loader searches is answered "not found" at once; any other is asked of ctypes as before,
so an installed liboqs is found and used exactly as asyncssh would find it.
"""
from __future__ import annotations

import functools
import glob
import os
import sys
import threading

_lock = threading.Lock()


@functools.cache
def _loader_cache() -> bytes | None:
    """The dynamic loader's cache, read once (asyncssh asks for several names); None if unreadable."""
    try:
        with open("/etc/ld.so.cache", "rb") as cache:
            return cache.read()
    except OSError:
        return None


def _loader_may_find(name: str) -> bool:
    """Whether `lib<name>.so*` is in the dynamic loader's cache or a folder it searches."""
    stem = f"lib{name}.so"
    cache = _loader_cache()
    if cache is None or stem.encode() in cache:
        return True  # found, or no cache to read: ask ctypes
    folders = [path for path in os.environ.get("LD_LIBRARY_PATH", "").split(":") if path]
    for base in ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"):
        folders += [base, *glob.glob(f"{base}/*-linux-*")]
    return any(glob.glob(os.path.join(glob.escape(folder), stem + "*")) for folder in folders)


def _import():
    if "asyncssh" in sys.modules or not sys.platform.startswith("linux"):
        import asyncssh
        return asyncssh
    import ctypes.util

    with _lock:
        find = ctypes.util.find_library
        ctypes.util.find_library = lambda name: find(name) if _loader_may_find(name) else None
        try:
            import asyncssh
        finally:
            ctypes.util.find_library = find
    return asyncssh


asyncssh = _import()
