"""Start one real test service by hand and print how to reach it; Ctrl-C stops it.

    python -m tests.services s3 | slurm | slurmdbd | ray
"""
from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
from pathlib import Path

from ._proc import ServiceError


def _serve(name: str, state: Path) -> tuple[object, list[str]]:
    if name == "s3":
        from .s3 import start_s3
        server = start_s3(state)
        return server, [f"endpoint_url = {server.endpoint_url}", f"key = {server.key}",
                        f"secret = {server.secret}",
                        f'storage_options = {{ key = "{server.key}", secret = "{server.secret}", '
                        f'client_kwargs = {{ endpoint_url = "{server.endpoint_url}" }} }}']
    if name in ("slurm", "slurmdbd"):
        from .slurm import start_slurm
        from .slurmdbd import SlurmAccounting
        cluster = start_slurm(state, SlurmAccounting(state) if name == "slurmdbd" else None)
        return cluster, [f"export SLURM_CONF={cluster.conf}", f"partition = {cluster.partition}"]
    from .ray import start_ray
    cluster = start_ray(state)
    return cluster, [f"address = {cluster.address}  (Jobs API; RAY_ADDRESS for `ray job submit`)",
                     f"gcs = {cluster.gcs_address}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.services", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["s3", "slurm", "slurmdbd", "ray"])
    args = parser.parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix=f"js-{args.name}-"))
    try:
        service, lines = _serve(args.name, state)
    except ServiceError as err:
        print(f"error: {err}")
        shutil.rmtree(state, ignore_errors=True)
        return 1
    print(f"{args.name} is running (state in {state}); Ctrl-C stops it.")
    for line in lines:
        print("  " + line, flush=True)
    stop_on = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_on)
    try:
        signal.sigwait(stop_on)
    finally:
        service.stop()
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
