"""The contract between the client and the runner on a site, defined once for both sides.

- How a runner starts: the modules run with `python -m`, the environment variable that carries
  a batch job's payload, where each rank of a run keeps its event log, the preemption signal and
  how a `slurm.signal` value reads.
- The version probe: `versions()` in the runner, and the same function as a script (`PROBE`)
  for a site's interpreter that may not have jupyter_split installed.
- The run states the runner writes and everyone reads (served to the sidebar as they are here).
- The live channel: one JSON line per request on the runner's unix socket (`OPS`), JSON lines
  back, raw bytes after the reply for `put` and `get` (the `--in` and `--out` payloads).

This module imports nothing of jupyter_split, so both sides (and a bare interpreter) can load it.
"""
from __future__ import annotations

import inspect
import json
import posixpath
import signal
from dataclasses import asdict, dataclass
from typing import Any

#: `python -m RUNNER_MODULE ...` starts a runner; LAUNCHER_MODULE one across ranks (torchrun)
RUNNER_MODULE = "jupyter_split.runner"
LAUNCHER_MODULE = "jupyter_split.runner.launcher"
#: a batch job has no stdin: its payload (secrets, the config) travels in this variable
PAYLOAD_VAR = "JUPYTER_SPLIT_PAYLOAD"
RANKS_DIR = "ranks"
#: the c10d rendezvous port on the first node of a multi-node Slurm job is this + job id % 10000
RDZV_PORT_BASE = 20000
#: the signal the launcher passes on to the ranks (Slurm's default warning, `slurm.signal`)
PREEMPT_SIGNAL = signal.SIGUSR2

def slurm_signal(value: str) -> str:
    """`--signal` for sbatch (from `slurm.signal`): delivered to the batch shell (B:), where the runner is, by default."""
    return value if ":" in value.split("@")[0] else f"B:{value}"


def signal_name(value: str) -> str:
    """The signal's name (`USR2`) from a `slurm.signal` value like `B:USR2@90`."""
    name = value.split("@")[0].split(":")[-1].upper()
    return name[3:] if name.startswith("SIG") else name


#: the live channel's requests: what the runner's socket answers
OPS = ("hello", "execute", "put", "get", "follow", "drop")
#: payload bytes move in pieces of this size, both ways
CHUNK = 4 << 20


@dataclass(frozen=True)
class RunState:
    """A state a run can be in: whether it has ended, and the badge style the sidebar gives it."""

    name: str
    terminal: bool
    style: str  # active | ok | bad | warn: base.css of the sidebar has a colour for each
    meaning: str


#: Every state a run's index row or `status` record can hold: the one list the CLI, the server
#: and the sidebar (GET /jupyter-split/states) go by.
RUN_STATES: tuple[RunState, ...] = (
    RunState("submitted", False, "active", "started; its runner has not written to the log yet"),
    RunState("queued", False, "active", "waiting in its session for the cells before it"),
    RunState("running", False, "active", "the cell is executing"),
    RunState("preempted", False, "warn", "the job is about to be preempted; the checkpoint hooks run"),
    RunState("requeued", False, "active", "the job was requeued; the cell starts again when it restarts"),
    RunState("not_requeued", False, "warn", "the job could not be requeued; the cell goes on"),
    RunState("succeeded", True, "ok", "the cell finished without an error"),
    RunState("failed", True, "bad", "the cell raised an error, or its runner died"),
    RunState("timeout", True, "bad", "the cell ran past its --timeout"),
    RunState("cancelled", True, "warn", "the run was cancelled"),
    RunState("interrupted", True, "warn", "the cell was interrupted (KeyboardInterrupt)"),
)
TERMINAL_STATES = frozenset(s.name for s in RUN_STATES if s.terminal)
#: every run state's name, in order (a filter's choices)
STATE_NAMES = [s.name for s in RUN_STATES]


def states_table() -> list[dict[str, Any]]:
    """RUN_STATES as JSON rows, in order."""
    return [asdict(s) for s in RUN_STATES]


def rank_dir(run_dir: str, rank: int) -> str:
    """Where rank `rank` of a run keeps its event log (rank 0: the run directory itself)."""
    return run_dir if rank == 0 else posixpath.join(run_dir, RANKS_DIR, str(rank))


def versions() -> dict[str, Any]:
    """This interpreter's versions of what both sides must share: python, cloudpickle, torch,
    jupyter_split (and where: executable, host, platform). Metadata only: no torch import."""
    import platform
    import socket
    import sys
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "executable": sys.executable, "host": socket.gethostname(),
            "platform": platform.platform(), "cloudpickle": version("cloudpickle"), "torch": version("torch"),
            "jupyter_split": version("jupyter_split")}


#: `python -c PROBE` prints `versions()` as JSON, under any interpreter, jupyter_split or not
PROBE = (f"from __future__ import annotations\nfrom typing import Any\n{inspect.getsource(versions)}\n"
         "import json\nprint(json.dumps(versions()))\n")


def encode(message: dict[str, Any]) -> bytes:
    """One message of the live channel: a JSON line."""
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A message read from the live channel (an empty line, the end of the stream, is {})."""
    return json.loads(line) if line.strip() else {}
