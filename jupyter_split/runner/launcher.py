"""The runner on clusters and across ranks: Slurm and Ray jobs, and `--gpus N --nodes M` cells.

    python -m jupyter_split.runner.launcher launch [--nproc N] [--nnodes M] [--rdzv slurm] -- RUNNER_ARGS
    python -m jupyter_split.runner.launcher rank -- RUNNER_ARGS     (what torchrun starts on every rank)

`launch` takes the runner's stdin payload (secrets, the config) from `$JUPYTER_SPLIT_PAYLOAD`
(a batch job has no stdin; the scheduler keeps the job's environment across a requeue) or
from stdin. With one process it runs the runner itself; with more it starts `torchrun`
(c10d rendezvous) with the payload in the environment of every rank, and stays to pass the
preemption warning on to the ranks.

Every rank runs a full runner. Rank 0 writes the run's own event log and ships `--out`;
rank K writes `ranks/K/` in the run directory. Rank 0 reports the cell's end only when every
rank has ended, and when a rank failed first, that rank's traceback is the cell's error.
`rank`, `world_size`, `local_rank`, `device` (this rank's card) and `dist_backend` are
predefined, and the process group is initialised before the cell runs.
"""
from __future__ import annotations

import argparse
import os
import posixpath
import signal
import subprocess
import sys
from pathlib import Path

from ..executors.base import ExecutorError

PAYLOAD_VAR = "JUPYTER_SPLIT_PAYLOAD"
RANKS_DIR = "ranks"
#: the c10d rendezvous port on the first node of a multi-node Slurm job is this + job id % 10000
RDZV_PORT_BASE = 20000
#: the signal the launcher passes on to the ranks (Slurm's default warning, `slurm.signal`)
PREEMPT_SIGNAL = signal.SIGUSR2


class DistributedError(ExecutorError):
    """A `--gpus`/`--nodes` request this site cannot serve; the message says what can."""


def world(gpus: int | None, nodes: int | None) -> tuple[int, int]:
    """(processes per node, nodes) for a cell's `--gpus N --nodes M`."""
    nproc, nnodes = max(gpus or 1, 1), max(nodes or 1, 1)
    return nproc, nnodes


def launch_args(gpus: int | None, nodes: int | None, multi_node: str | None = None) -> list[str]:
    """Arguments after `python` that start a one-shot runner for this many ranks.

    `multi_node` names how nodes find each other (`slurm`); without it more than one
    node is an error that says which executor can.
    """
    nproc, nnodes = world(gpus, nodes)
    if nnodes > 1 and multi_node is None:
        raise DistributedError(
            f"--nodes {nnodes} needs a site whose executor spans machines (executor = \"slurm\"); "
            "this site runs on one machine: use --gpus N alone")
    argv = ["-m", "jupyter_split.runner.launcher", "launch", "--nproc", str(nproc), "--nnodes", str(nnodes)]
    return argv + (["--rdzv", multi_node] if nnodes > 1 else [])


def rank_dir(run_dir: str, rank: int) -> str:
    """Where rank `rank` of a run keeps its event log (rank 0: the run directory itself)."""
    return run_dir if rank == 0 else posixpath.join(run_dir, RANKS_DIR, str(rank))


def _take_payload(argv: list[str]) -> str:
    payload = os.environ.pop(PAYLOAD_VAR, None)
    if payload is None and "--stdin-json" in argv:
        payload = sys.stdin.readline()
    return (payload or "").strip()


def _slurm_rendezvous() -> str:
    """host:port of the c10d rendezvous: the job's first node, a port of its own per job."""
    nodes = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                           capture_output=True, text=True, check=True).stdout.split()
    # Jobs sharing a first node must not share a port; below the ephemeral range.
    return f"{nodes[0]}:{RDZV_PORT_BASE + int(os.environ['SLURM_JOB_ID']) % 10000}"


def _torchrun(args: argparse.Namespace, runner_argv: list[str], payload: str) -> int:
    if args.rdzv == "slurm":
        rdzv = [f"--nnodes={args.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={_slurm_rendezvous()}",
                f"--rdzv-id={os.environ['SLURM_JOB_ID']}"]
    elif args.nnodes > 1:
        raise DistributedError(f"--nnodes {args.nnodes} needs --rdzv slurm (inside a Slurm job)")
    else:
        rdzv = ["--standalone"]
    env = {**os.environ, PAYLOAD_VAR: payload}
    argv = [sys.executable, "-m", "torch.distributed.run", *rdzv, f"--nproc-per-node={args.nproc}",
            "-m", "jupyter_split.runner.launcher", "rank", "--", *runner_argv]
    # torchrun dies of a signal it does not handle, like Slurm's preemption warning (sent to this
    # process, the batch shell): torchrun inherits "ignore", and this process hands it to the ranks.
    # INT and TERM reach torchrun itself (same process group, or the job step), which passes them on.
    for sig in (PREEMPT_SIGNAL, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    torchrun = subprocess.Popen(argv, env=env, preexec_fn=end_with_parent)
    signal.signal(PREEMPT_SIGNAL, lambda signum, frame: _signal_children(torchrun.pid, signum))
    return torchrun.wait()


def end_with_parent() -> None:
    """Get SIGTERM when the parent process dies, however it dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(1)


def _signal_children(pid: int, signum: int) -> None:
    """Send `signum` to the direct children of `pid` (torchrun's ranks)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                os.kill(int(stat.parent.name), signum)
        except (OSError, ValueError, IndexError):
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_split.runner.launcher")
    parser.add_argument("mode", choices=["launch", "rank"])
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--rdzv", choices=["slurm"])
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        parser.error("the runner's arguments follow `--`")
    cut = argv.index("--")
    args, runner_argv = parser.parse_args(argv[:cut]), argv[cut + 1:]
    payload = _take_payload(runner_argv)
    if args.mode == "launch" and args.nproc * args.nnodes > 1:
        return _torchrun(args, runner_argv, payload)
    from .cluster import run_here

    return run_here(runner_argv, payload, rank=int(os.environ.get("RANK", "0")))


if __name__ == "__main__":
    sys.exit(main())
