"""Preemption: the user's checkpoint hooks, called when the cluster warns that a job will end.

In a cell on a Slurm site:

    from jupyter_split.runner.preempt import on_preempt   # also predefined in cluster runners

    @on_preempt
    def save():
        jupyter_split.ckpt.save(model.state_dict(), "s3://bucket/ckpt/latest")

The job asks Slurm for a warning signal (`slurm.signal`, `USR2@90` by default). When it
arrives the runner calls the hooks, asks Slurm to requeue the job and exits without a
final record, so the run's event log goes on under the same run id when the job restarts.
The cell then runs again from its first line: it should resume from its checkpoint.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import traceback
from typing import Any, Callable

Hook = Callable[[], Any]
_hooks: list[Hook] = []

#: the exit status of a runner that handed its job back to the scheduler
REQUEUED_EXIT = 75


def on_preempt(hook: Hook) -> Hook:
    """Register `hook` to run (in registration order) when the job is about to be preempted."""
    _hooks.append(hook)
    return hook


def run_hooks(report: Callable[[str], None]) -> int:
    """Call every hook; a failing hook is reported and the others still run. Returns failures."""
    failures = 0
    for hook in list(_hooks):
        try:
            hook()
        except Exception:
            failures += 1
            report(f"checkpoint hook {getattr(hook, '__name__', hook)!r} failed:\n{traceback.format_exc()}")
    return failures


def requeue() -> str | None:
    """Ask Slurm to requeue this job; returns why it could not, or None when it was requeued."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return "not inside a Slurm job (no SLURM_JOB_ID)"
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return "scontrol is not on PATH inside the job"
    done = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return f"`scontrol requeue {job}` failed: {done.stderr.strip()}"
    return None
