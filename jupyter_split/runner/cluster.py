"""The runner inside a cluster job or on one rank of a distributed cell (see `distributed`).

`ClusterRunner` adds to the runner what a batch job and a rank need: signals that may arrive
twice (from the scheduler and from torchrun) count once, the preemption warning calls the
cell's checkpoint hooks and requeues the job, and on a rank the process group is joined
before the cell and rank 0 reports the cell's end for all ranks.
"""
from __future__ import annotations

import io
import json
import os
import posixpath
import signal
import sys
import time
from pathlib import Path
from typing import Any

from . import preempt
from .capture import CAPTURE
from ..protocol import rank_dir, signal_name
from .process import end_with_parent
from .runner import Runner, main as runner_main
from ..runs.events import is_final, iter_events, write_json_atomic

#: a signal that reaches a rank twice within this window (from the scheduler and from
#: torchrun, which forwards what it gets) is one signal
DUPLICATE_WINDOW = 2.0
#: how long rank 0, failed itself, waits for the other ranks' logs to name who failed first
PEER_GRACE = 5.0
#: set by torchrun for its ranks: such a runner joins the process group before the cell
UNDER_TORCHRUN = "TORCHELASTIC_RUN_ID"


class ClusterRunner(Runner):
    """A one-shot runner on a cluster: preemption hooks, and when there are ranks, one rank."""

    def __init__(self, site: str, accelerator: str):
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self._last_interrupt = float("-inf")
        self._preempting = False
        super().__init__(site, accelerator)
        self.shell.user_ns.update(rank=self.rank, world_size=self.world_size, local_rank=self.local_rank,
                                  on_preempt=preempt.on_preempt)
        name = _preempt_signal(site)
        if name and os.environ.get("SLURM_JOB_ID"):
            signal.signal(getattr(signal, f"SIG{name}"), self._on_preempt)

    # -- signals: the scheduler and torchrun may both deliver one; act on it once
    def _on_interrupt(self, signum, frame) -> None:
        now = time.monotonic()
        if now - self._last_interrupt < DUPLICATE_WINDOW:
            return
        self._last_interrupt = now
        super()._on_interrupt(signum, frame)

    def _on_terminate(self, signum, frame) -> None:
        if self.terminating:
            return
        super()._on_terminate(signum, frame)

    def _on_preempt(self, signum, frame) -> None:
        # Runs in the main thread between two bytecodes of the cell, like KeyboardInterrupt:
        # the hooks see the cell's objects as they are, and nothing else runs meanwhile.
        if self._preempting:
            return
        self._preempting = True
        CAPTURE.record("status", state="preempted", reason=f"{signal.Signals(signum).name}: "
                       "the job is about to be preempted or to reach its time limit; calling the checkpoint hooks")
        preempt.run_hooks(CAPTURE.streams["stderr"].write)
        CAPTURE.flush()
        if self.rank != 0:
            return  # rank 0 requeues the whole job; this rank ends with it
        why = preempt.requeue()
        if why is not None:
            # Not `running`: that record starts an attempt (see _starts_attempt).
            CAPTURE.record("status", state="not_requeued", reason=f"could not requeue: {why}; the cell goes on")
            self._preempting = False
            return
        CAPTURE.record("status", state="requeued",
                       reason="the job was requeued; the cell runs again from its first line when it restarts")
        CAPTURE.flush()
        os._exit(preempt.REQUEUED_EXIT)  # no final record: the log goes on after the restart

    # -- a cell on one rank
    def _execute(self, path: Path, request: dict[str, Any]) -> tuple[str, str | None]:
        if UNDER_TORCHRUN in os.environ:
            failure = self._join_group()
            if failure:
                return "failed", failure
        state, reason = super()._execute(path, request)
        if self.world_size > 1 and self.rank == 0:
            return self._whole_world(path, state, reason)
        return state, reason

    def _join_group(self) -> str | None:
        import torch
        import torch.distributed as dist

        if dist.is_initialized():
            return None
        ns = self.shell.user_ns
        try:
            device = torch.device(str(ns["device"]))
            if device.type != "cpu":
                device = torch.device(device.type, self.local_rank)
                getattr(torch, device.type).set_device(device)
            ns["device"] = device
            dist.init_process_group(backend=str(ns["dist_backend"]))
        except Exception as exc:
            message = (f"rank {self.rank}: cannot join the process group (backend {ns.get('dist_backend')}): "
                       f"{type(exc).__name__}: {exc}")
            CAPTURE.record("error", ename=type(exc).__name__, evalue=str(exc), traceback=[message])
            return message
        return None

    def _whole_world(self, path: Path, state: str, reason: str | None) -> tuple[str, str | None]:
        """The cell's outcome over all ranks: rank 0 waits for the others, then names the first failure."""
        run_dir = str(path)
        self.executing = True  # an interrupt or cancel while waiting ends the wait
        try:
            outcomes = _peer_outcomes(run_dir, self.world_size, None if state == "succeeded" else PEER_GRACE)
        except KeyboardInterrupt:
            return (self.stop_reason or "interrupted"), "stopped while waiting for the other ranks"
        finally:
            self.executing = False
        # A peer that failed is an error of its own; one interrupted or cancelled followed rank 0
        # (or torchrun tearing the ranks down after a failure), so it names no culprit.
        failed = [(o["error_t"], rank, o) for rank, o in outcomes.items() if o["state"] == "failed"]
        if state == "failed":
            failed.append((_outcome(run_dir)["error_t"], 0, None))
        elif state != "succeeded" and not failed:
            return state, reason
        if not failed:
            ended = {rank: o["state"] for rank, o in outcomes.items() if o["state"] != "succeeded"}
            if not ended:
                return state, reason
            return "failed", "; ".join(f"rank {rank} {s or 'ended without a final record (killed?)'}"
                                       for rank, s in ended.items())
        _, first, outcome = min(failed, key=lambda item: (item[0], item[1]))
        if outcome is None:
            return state, reason
        error = outcome["error"]
        if error:
            CAPTURE.record("error", ename=error.get("ename"), evalue=error.get("evalue"),
                           traceback=[f"[rank {first} of {self.world_size}]", *error.get("traceback", [])])
        return "failed", f"rank {first} failed first: {outcome['reason']}"


def _preempt_signal(site: str) -> str | None:
    from ..config import load_config

    try:
        return signal_name(load_config().site(site).slurm.signal)
    except (KeyError, ValueError):
        return None


def _starts_attempt(event: dict[str, Any]) -> bool:
    """Whether `event` starts an attempt in a rank's log: one `running` record a runner process."""
    return event.get("type") == "status" and event.get("state") == "running"


def _outcome(run_dir: str, attempt: int | None = None) -> dict[str, Any]:
    """Final state and error of attempt `attempt` (1, 2, ... across requeues; None: the latest).

    An attempt the rank has not begun yet has state None, like one still running. The log is read
    once, a chunk at a time, across its segments: a rank that printed for weeks is not held whole.
    """
    number, final, error = 0, None, None
    for event in iter_events(run_dir):
        if _starts_attempt(event):
            if attempt is not None and number == attempt:
                break  # the next attempt: the one asked for is whole
            number, final, error = number + 1, None, None
        elif is_final(event):
            final = event
        elif event.get("type") == "error":
            error = event
    if number == 0 or (attempt is not None and number < attempt):
        return {"state": None, "reason": None, "error": None, "error_t": float("inf")}
    return {"state": final["state"] if final else None, "reason": final.get("reason") if final else None,
            "error": error, "error_t": (error or final or {"t": float("inf")})["t"]}


def _peer_outcomes(run_dir: str, world_size: int, grace: float | None) -> dict[int, dict[str, Any]]:
    """Each other rank's outcome in rank 0's attempt, waiting for all to end (or `grace` seconds)."""
    attempt = sum(1 for event in iter_events(run_dir) if _starts_attempt(event))
    deadline = None if grace is None else time.monotonic() + grace
    while True:
        outcomes = {rank: _outcome(rank_dir(run_dir, rank), attempt) for rank in range(1, world_size)}
        if all(o["state"] for o in outcomes.values()):
            return outcomes
        if deadline is not None and time.monotonic() > deadline:
            return outcomes
        time.sleep(0.05)


def _prepare_rank_dir(run_dir: str, rank: int) -> str:
    """Rank K's own directory: the request (no --out; with --wandb, a disabled W&B run, so the
    cell's `wandb.log` works on every rank and only rank 0 records) and the --in data."""
    target = Path(rank_dir(run_dir, rank))
    target.mkdir(parents=True, exist_ok=True)
    request = json.loads((Path(run_dir) / "request.json").read_text())
    write_json_atomic(target / "request.json", {**request, "out": []})
    link = target / "in.pkl"
    if (Path(run_dir) / "in.pkl").exists() and not link.exists():
        link.symlink_to(posixpath.join("..", "..", "in.pkl"))
    return str(target)


def _rank_argv(argv: list[str], rank: int) -> list[str]:
    """The runner's arguments for one rank: its own run directory; the live socket is rank 0's."""
    if rank == 0:
        return argv
    out, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word == "--socket":
            skip = True
            continue
        if i > 0 and argv[i - 1] == "--run-dir":
            word = _prepare_rank_dir(os.path.abspath(word), rank)
        out.append(word)
    return out


def run_here(argv: list[str], payload: str, rank: int = 0) -> int:
    """Run the runner in this process as a ClusterRunner, the payload as its stdin."""
    if UNDER_TORCHRUN in os.environ:
        # torchrun starts each rank in a session of its own: a signal to torchrun's process
        # group misses them, so they end when torchrun does (even by SIGKILL).
        end_with_parent()
    sys.stdin = io.StringIO(payload + "\n")
    try:
        return runner_main(_rank_argv(argv, rank), runner_class=ClusterRunner)
    finally:
        _leave_group()


def _leave_group() -> None:
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


