"""Slurm with accounting for tests: the one-node cluster of `slurm.py`, its jobs kept by a real
slurmdbd in a private MariaDB, so `sacct` answers as on a site's cluster.

MariaDB gets its own data directory, unix socket and free port under the cluster's state
directory; the database user's password is generated, sent to the server on the client's stdin
and written only into slurmdbd.conf (mode 0600). The node declares two GPUs as a GRES whose device
files are empty files in the state directory (there are no GPUs here: Slurm allocates and accounts
them all the same, as `gres/gpu=N` in sacct's AllocTRES). The fixture is separate from `slurm` so that one stays as fast as it was.
"""
from __future__ import annotations

import getpass
import os
import secrets
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from ._proc import ServiceError, free_ports, require, start, tail, wait_file, wait_for, wait_port
from .slurm import SlurmCluster, cluster_session

INSTALL = "apt-get install slurmdbd mariadb-server"
DATABASE = "slurm_acct_db"
#: the GPUs the node declares (a count-only GRES: no device files)
GPUS = 2


def _mariadbd() -> str:
    try:
        return require("mariadbd", INSTALL)
    except ServiceError:
        return require("mysqld", INSTALL)  # older MariaDB and MySQL name it so


class SlurmAccounting:
    """slurmdbd and its MariaDB for a `start_slurm` cluster: `start_slurm(state, SlurmAccounting(state))`."""

    def __init__(self, state: Path):
        self.state = state
        self.db_port, self.dbd_port = free_ports(2)
        self.user = getpass.getuser()

    def conf_lines(self) -> str:
        # AccountingStoragePass: the munge socket that slurmctld and the clients reach slurmdbd through
        return f"""\
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.dbd_port}
AccountingStoragePass={self.state / 'munge.socket'}
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
GresTypes=gpu
"""

    def node_extra(self) -> str:
        return f" Gres=gpu:{GPUS}"

    def start(self, cluster: SlurmCluster) -> None:
        """MariaDB, then slurmdbd, then the cluster registered in it; each PID into `cluster.pids`."""
        # Slurm drops a GPU without a device file; these stand in for /dev/nvidiaN (no job opens them)
        for i in range(GPUS):
            (self.state / f"gpu{i}").touch()
        (self.state / "gres.conf").write_text(f"Name=gpu File={self.state}/gpu[0-{GPUS - 1}]\n")
        password = self._start_mariadb(cluster)
        self._start_slurmdbd(cluster, password)
        for argv in (["sacctmgr", "-i", "add", "cluster", cluster.name],
                     # root's association comes with the cluster; another user needs one to run jobs
                     *([] if self.user == "root" else [["sacctmgr", "-i", "add", "user", self.user,
                                                        "account=root", f"cluster={cluster.name}"]])):
            done = cluster.run(*argv, check=False)
            if done.returncode != 0:
                raise ServiceError(f"{' '.join(argv)} failed: {done.stdout}{done.stderr}\n"
                                   f"slurmdbd log:\n{tail(self.state / 'slurmdbd.log')}")

    def _sql(self, sql: str, check: bool = True) -> subprocess.CompletedProcess:
        # The socket's unix_socket authentication: no password on a command line or in a file.
        return subprocess.run([require("mariadb", INSTALL), "--no-defaults", f"--socket={self.state / 'db.sock'}",
                               "-u", self.user, "--batch"], input=sql, capture_output=True, text=True,
                              check=check, timeout=30)

    def _start_mariadb(self, cluster: SlurmCluster) -> str:
        data, log = self.state / "mariadb", self.state / "mariadb.log"
        as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root unless told
        done = subprocess.run([require("mariadb-install-db", INSTALL), "--no-defaults", f"--datadir={data}",
                               *as_root, "--auth-root-authentication-method=socket", "--skip-test-db"],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ServiceError(f"mariadb-install-db failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        proc = start([_mariadbd(), "--no-defaults", f"--datadir={data}", f"--socket={self.state / 'db.sock'}",
                      f"--port={self.db_port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                      f"--pid-file={self.state / 'mariadb.pid'}", f"--log-error={log}", *as_root,
                      "--innodb-lock-wait-timeout=900"],
                     self.state / "mariadb.out")
        cluster.pids["mariadbd"] = proc.pid
        wait_file(self.state / "db.sock", "mariadbd socket", 60, log, proc)
        wait_for(lambda: self._sql("SELECT 1", check=False).returncode == 0, "mariadbd to answer", 30, log, proc)
        password = secrets.token_urlsafe(24)
        done = self._sql(f"CREATE DATABASE {DATABASE};\n"
                         f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
                         f"GRANT ALL ON {DATABASE}.* TO 'slurm'@'127.0.0.1';\n", check=False)
        if done.returncode != 0:
            raise ServiceError(f"creating the accounting database failed: {done.stderr}")
        return password

    def _start_slurmdbd(self, cluster: SlurmCluster, password: str) -> None:
        slurmdbd = require("slurmdbd", INSTALL)
        conf = self.state / "slurmdbd.conf"  # beside slurm.conf: slurmdbd finds it through SLURM_CONF
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"""\
AuthType=auth/munge
AuthInfo=socket={self.state / 'munge.socket'}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.dbd_port}
SlurmUser={self.user}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=slurm
StoragePass={password}
StorageLoc={DATABASE}
PidFile={self.state / 'slurmdbd.pid'}
LogFile={self.state / 'slurmdbd.log'}
""")
        proc = start([slurmdbd, "-D"], self.state / "slurmdbd.out", cluster.env)
        cluster.pids["slurmdbd"] = proc.pid
        wait_port(self.dbd_port, "slurmdbd", 60, self.state / "slurmdbd.log", proc)


@pytest.fixture(scope="session")
def slurm_accounting() -> Iterator[SlurmCluster]:
    """A real one-node Slurm with slurmdbd and MariaDB: `sacct` answers. As `slurm`: `.conf`, `.env`, `.run()`,
    and `.name`, the cluster's name in accounting."""
    yield from cluster_session("js-slurmdbd-", SlurmAccounting)
