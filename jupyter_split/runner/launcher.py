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
import functools
import os
import signal
import subprocess
import sys

from ..errors import DistributedError
from ..protocol import LAUNCHER_MODULE, PAYLOAD_VAR, PREEMPT_SIGNAL, RDZV_PORT_BASE
from .process import end_with_parent, signal_children


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
            "-m", LAUNCHER_MODULE, "rank", "--", *runner_argv]
    # torchrun dies of a signal it does not handle, like Slurm's preemption warning (sent to this
    # process, the batch shell): torchrun inherits "ignore", and this process hands it to the ranks.
    # INT and TERM reach torchrun itself (same process group, or the job step), which passes them on.
    for sig in (PREEMPT_SIGNAL, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    torchrun = subprocess.Popen(argv, env=env, preexec_fn=functools.partial(end_with_parent, os.getpid()))
    signal.signal(PREEMPT_SIGNAL, lambda signum, frame: signal_children(torchrun.pid, signum))
    return torchrun.wait()


def main(argv: list[str] | None = None) -> int:
    """The launcher's command line (`launch` or `rank`, the runner's arguments after `--`);
    returns the exit status. More than one process in all starts torchrun; one process
    runs the runner here."""
    parser = argparse.ArgumentParser(prog=f"python -m {LAUNCHER_MODULE}")
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
    from .cluster import run_here  # the runner's imports (IPython) only where a rank runs

    return run_here(runner_argv, payload, rank=int(os.environ.get("RANK", "0")))


if __name__ == "__main__":
    sys.exit(main())
