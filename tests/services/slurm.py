"""Slurm for tests: a real single-node cluster (munged, slurmctld, slurmd) on 127.0.0.1.

It lives in its own state directory with its own munge socket and free ports, so it never
meets the machine's own Slurm (if any) or another test run's. Clients find it through
`SLURM_CONF`, which `.env` carries. It keeps no accounting; `slurmdbd.py` starts one that does.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import pytest

from ._proc import ServiceError, free_ports, require, start, stop, tail, wait_file, wait_for

INSTALL = "apt-get install slurm-wlm munge"
PARTITION = "debug"
NO_ACCOUNTING = "AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none\n"


class Accounting(Protocol):
    """What a cluster with accounting adds: slurm.conf lines, the node line's end (its GRES), and the
    daemons to start once munged is up and before slurmctld (their PIDs go into the cluster's)."""

    def conf_lines(self) -> str: ...

    def node_extra(self) -> str: ...

    def start(self, cluster: "SlurmCluster") -> None: ...


def _conf(state: Path, ctld_port: int, slurmd_port: int, cpus: int, name: str,
          accounting: str = NO_ACCOUNTING, node: str = "") -> str:
    # Why each non-default line: the daemons stay on 127.0.0.1 (CommunicationParameters), use
    # our own munged (AuthInfo), need no cgroups (linuxproc, task/none), and there is no
    # slurmdbd (accounting none) unless `accounting` says otherwise. config_overrides lets the
    # node's CPUs match this machine.
    # The scheduler runs on every submit and every 2 s, and cred_expire=5 lets a requeued job
    # start again after seconds instead of minutes: tests of requeue wait that much less.
    return f"""\
ClusterName={name}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={state / 'munge.socket'},cred_expire=5
CredType=cred/munge
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation={state / 'ctld'}
SlurmdSpoolDir={state / 'spool'}
SlurmctldPidFile={state / 'slurmctld.pid'}
SlurmdPidFile={state / 'slurmd.pid'}
SlurmctldLogFile={state / 'slurmctld.log'}
SlurmdLogFile={state / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
{accounting}JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=5
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000{node} State=UNKNOWN
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """A running one-node Slurm: its config file, the client environment, the partition."""

    conf: Path
    env: dict[str, str]
    partition: str
    state_dir: Path
    pids: dict[str, int] = field(default_factory=dict)
    name: str = ""

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a Slurm client (`sbatch`, `squeue`, ...) against this cluster."""
        return subprocess.run(list(argv), env={**os.environ, **self.env}, capture_output=True,
                              text=True, check=check, timeout=60)

    def stop(self) -> None:
        # Jobs first (a failed test may leave one running): slurmd's exit would orphan them.
        if "slurmctld" in self.pids:
            self.run("scancel", f"--partition={self.partition}", check=False)
            wait_for(lambda: not self.run("squeue", "-h", check=False).stdout.strip(), "jobs to end", 30)
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            if name in self.pids:
                stop(self.pids[name], grace=10)


def _sinfo_idle(env: dict[str, str]) -> bool:
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=20)
    return done.returncode == 0 and done.stdout.strip() in {"idle", "mixed", "allocated"}


def start_slurm(state: Path, accounting: Accounting | None = None) -> SlurmCluster:
    """Start munged, slurmctld and slurmd under `state` (and `accounting`'s daemons between munged and
    slurmctld); raise `ServiceError` on failure."""
    munged = require("munged", INSTALL)
    slurmctld = require("slurmctld", INSTALL)
    slurmd = require("slurmd", INSTALL)
    require("sbatch", INSTALL)
    for sub in ("ctld", "spool"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    key = state / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    ctld_port, slurmd_port = free_ports(2)
    conf = state / "slurm.conf"
    name = f"js{secrets.token_hex(3)}"
    extra = {} if accounting is None else {"accounting": accounting.conf_lines(), "node": accounting.node_extra()}
    conf.write_text(_conf(state, ctld_port, slurmd_port, max(2, os.cpu_count() or 2), name, **extra))
    env = {"SLURM_CONF": str(conf)}
    cluster = SlurmCluster(conf=conf, env=env, partition=PARTITION, state_dir=state, name=name)
    try:
        socket = state / "munge.socket"
        proc = start([munged, "--foreground", "--force", f"--socket={socket}", f"--key-file={key}",
                      f"--pid-file={state / 'munged.pid'}", f"--log-file={state / 'munged.log'}",
                      f"--seed-file={state / 'munged.seed'}"], state / "munged.out")
        cluster.pids["munged"] = proc.pid
        wait_file(socket, "munged socket", 20, state / "munged.log", proc)
        if accounting is not None:
            accounting.start(cluster)
        proc = start([slurmctld, "-D", "-f", str(conf)], state / "slurmctld.out", env)
        cluster.pids["slurmctld"] = proc.pid
        wait_file(state / "slurmctld.pid", "slurmctld", 30, state / "slurmctld.log", proc)
        proc = start([slurmd, "-D", "-f", str(conf), "-N", "localhost"], state / "slurmd.out", env)
        cluster.pids["slurmd"] = proc.pid
        wait_for(lambda: _sinfo_idle(env), "slurm node localhost to come up idle", 60,
                 state / "slurmd.log", proc)
    except ServiceError as err:
        cluster.stop()
        raise ServiceError(f"{err}\nslurmctld log:\n{tail(state / 'slurmctld.log')}") from None
    return cluster


def cluster_session(prefix: str, accounting: Callable[[Path], Accounting] | None = None) -> Iterator[SlurmCluster]:
    """A session fixture's body: a cluster in a new state directory (with `accounting(state)`'s daemons),
    stopped and removed at the end."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = start_slurm(state, accounting and accounting(state))
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A real one-node Slurm: `.conf`, `.env` (SLURM_CONF for clients), `.partition`, `.run()`."""
    yield from cluster_session("js-slurm-")
