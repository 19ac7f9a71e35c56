"""A site process's lifetime: children end with their parent, and a parent that is PID 1 (a
container's first process, e.g. the launcher as a Ray or Kubernetes job's entry point) is a
parent like any other."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

CHILD = "from jupyter_split.runner.process import end_with_parent; end_with_parent(); print('alive', flush=True)"
# PID 1 of a new PID namespace starts the child and waits for it, as a container's entry point would
PARENT = f"import subprocess, sys, os; assert os.getpid() == 1; sys.exit(subprocess.run([sys.executable, '-c', {CHILD!r}]).returncode)"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a PID namespace needs root and unshare "
                    "(CI runs as root)")
def test_a_child_of_pid_1_is_not_taken_for_an_orphan():
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", PARENT],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "alive\n", done.stderr


def test_a_child_whose_parent_died_before_it_asked_ends():
    # the launcher passes its own pid; a child whose parent is already another process ends at once
    done = subprocess.run([sys.executable, "-c", "from jupyter_split.runner.process import end_with_parent\n"
                           "end_with_parent(parent=-5)\nprint('alive')"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
