"""asyncssh's import without its toolchain search for liboqs (`jupyter_split/ssh/library.py`)."""
import ctypes.util
import subprocess
import sys

from jupyter_split.ssh import library


def test_a_library_the_loader_knows_is_asked_of_ctypes_and_an_unknown_one_is_not():
    assert library._loader_may_find("c")  # libc: in every loader cache
    assert ctypes.util.find_library("c")
    assert not library._loader_may_find("jupyter-split-no-such-library")
    assert ctypes.util.find_library("jupyter-split-no-such-library") is None  # the answer ctypes gives


def test_the_import_spawns_no_process_for_a_library_not_installed_and_restores_ctypes():
    # a fresh interpreter: asyncssh imported through the library asks ctypes (which may start
    # ldconfig, gcc and ld) only for the names the loader may find (nettle here, for UMAC), starts
    # no process outside those, and gets the answer for liboqs that its own lookup gets
    code = (
        "import ctypes.util, subprocess\n"
        "real_find, real_popen = ctypes.util.find_library, subprocess.Popen.__init__\n"
        "asked, outside, inside = [], [], [False]\n"
        "def find(name):\n"
        "    asked.append(name)\n"
        "    inside[0] = True\n"
        "    try:\n"
        "        return real_find(name)\n"
        "    finally:\n"
        "        inside[0] = False\n"
        "def popen(self, args, *a, **k):\n"
        "    if not inside[0]:\n"
        "        outside.append(args)\n"
        "    real_popen(self, args, *a, **k)\n"
        "ctypes.util.find_library, subprocess.Popen.__init__ = find, popen\n"
        "from jupyter_split.ssh.library import asyncssh\n"
        "import asyncssh.crypto.pq as pq\n"
        "assert ctypes.util.find_library is find, 'ctypes left patched'\n"
        "spawned_outside = len(outside)\n"
        "installed = bool(real_find('oqs'))\n"
        "print(bool(pq._oqs_lib), installed, 'oqs' in asked, spawned_outside)\n"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    found_by_asyncssh, installed, asked_ctypes, outside = out.stdout.split()
    assert found_by_asyncssh == installed  # the answer asyncssh's own lookup gives
    assert asked_ctypes == installed  # ctypes (and its processes) asked only when liboqs is there
    assert outside == "0"
