"""The contract between the client and the runner on a site, defined once for both sides.

- How a runner starts: the modules run with `python -m`, the environment variable that carries
  a batch job's payload, where each rank of a run keeps its event log, the preemption signal.
- The version probe: `versions()` in the runner, and the same function as a script (`PROBE`)
  for a site's interpreter that may not have jupyter_split installed.
- The live channel: one JSON line per request on the runner's unix socket (`OPS`), JSON lines
  back, raw bytes after the reply for `put` and `get` (the `--in` and `--out` payloads).

This module imports nothing of jupyter_split, so both sides (and a bare interpreter) can load it.
"""
from __future__ import annotations

import inspect
import json
import posixpath
import signal
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

#: the live channel's requests: what the runner's socket answers
OPS = ("hello", "execute", "put", "get", "follow")
#: payload bytes move in pieces of this size, both ways
CHUNK = 4 << 20


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
