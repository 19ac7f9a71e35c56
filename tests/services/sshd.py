"""A real OpenSSH server on 127.0.0.1 for the tests (fixture `sshd`, session scope).

Throwaway ed25519 host and client keys, its own port, config, pid file and authorized
keys; host keys are checked through a known_hosts file, never turned off. The server
is stopped by its own PID. `drop_connections()` kills the per-connection sshd
processes (by PID) so tests can cut a live link while the user's processes survive.
"""
from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from ._proc import ServiceError, free_port, require, start, stop, wait_for

INSTALL = "install it with `apt-get install -y openssh-server openssh-client`"


def keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True,
    )


def fingerprint_of(public_key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]


@dataclass
class SshServer:
    root: Path
    host: str
    port: int
    user: str
    identity_file: str
    known_hosts: str
    fingerprint: str
    host_public_key: str
    process: subprocess.Popen[bytes]
    log: Path
    workdir: str = field(init=False)

    def __post_init__(self) -> None:
        self.workdir = str(self.root / "workdir")

    @property
    def pid(self) -> int:
        return self.process.pid

    def site(self, **overrides: Any) -> dict[str, Any]:
        """A `[sites.X]` table for this server, for `executor = "ssh"`."""
        table: dict[str, Any] = {
            "executor": "ssh",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity_file": self.identity_file,
            "known_hosts": self.known_hosts,
            "connect_timeout": 10.0,
            "keepalive_interval": 5.0,
            "python": sys.executable,
            "workdir": self.workdir,
            "jurisdiction": "SG",
            "accelerator": "cpu",
        }
        table.update(overrides)
        return table

    def connection_pids(self) -> list[int]:
        """PIDs of the sshd processes serving current connections (not the user's processes)."""
        pids = []
        for child in psutil.Process(self.pid).children(recursive=True):
            try:
                if child.name().startswith("sshd"):
                    pids.append(child.pid)
            except psutil.NoSuchProcess:
                continue
        return pids

    def drop_connections(self) -> int:
        """Cut every live connection abruptly (SIGKILL to its sshd processes); returns how many were killed."""
        killed = 0
        for pid in self.connection_pids():
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                continue
        return killed

    def stop(self) -> None:
        """Stop the server and every connection it serves (by PID)."""
        self.drop_connections()
        stop(self.pid)
        self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _config(root: Path, port: int, host_key: Path, authorized: Path, overrides: dict[str, str]) -> str:
    settings = {
        "Port": str(port),
        "ListenAddress": "127.0.0.1",
        "HostKey": str(host_key),
        "PidFile": str(root / "sshd.pid"),
        "AuthorizedKeysFile": str(authorized),
        "UsePAM": "no",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "PubkeyAuthentication": "yes",
        "PermitRootLogin": "prohibit-password",
        "StrictModes": "no",
        "Subsystem": "sftp internal-sftp",
        "AllowStreamLocalForwarding": "yes",
        "AllowTcpForwarding": "yes",
        "X11Forwarding": "no",
        "PrintMotd": "no",
        "LogLevel": "VERBOSE",
        **overrides,
    }
    return "".join(f"{key} {value}\n" for key, value in settings.items())


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def start_sshd(root: Path, **settings: str) -> SshServer:
    """Start sshd in `root` with fresh keys; `settings` override sshd_config keywords
    (e.g. AllowStreamLocalForwarding="no"). Raises ServiceError naming the fix if it cannot."""
    sshd_bin = require("sshd", INSTALL)
    require("ssh-keygen", INSTALL)
    root.mkdir(parents=True, exist_ok=True)
    (root / "workdir").mkdir(exist_ok=True)
    # sshd run by root refuses to start without its privilege separation directory.
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    keygen(host_key, "jupyter-split-test-host")
    keygen(client_key, "jupyter-split-test-client")
    authorized = root / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    host_public = Path(f"{host_key}.pub").read_text().split()
    log = root / "sshd.log"
    for attempt in range(5):
        port = free_port()
        conf = root / "sshd_config"
        conf.write_text(_config(root, port, host_key, authorized, settings))
        # -D keeps sshd in the foreground so its PID is ours to stop; -e sends its log to `log`.
        process = start([sshd_bin, "-D", "-e", "-f", str(conf)], log)
        try:
            wait_for(lambda: _answers(port), f"sshd on 127.0.0.1:{port}", 15, log, process)
            break
        except ServiceError:
            stop(process.pid, grace=2)
            if attempt == 4:
                raise
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    return SshServer(
        root=root, host="127.0.0.1", port=port, user=getpass.getuser(),
        identity_file=str(client_key), known_hosts=str(known_hosts),
        fingerprint=fingerprint_of(Path(f"{host_key}.pub")),
        host_public_key=f"{host_public[0]} {host_public[1]}",
        process=process, log=log,
    )


@contextmanager
def running_sshd(root: Path, **settings: str) -> Iterator[SshServer]:
    """`start_sshd` for one test, with its own settings; stopped on the way out."""
    server = start_sshd(root, **settings)
    try:
        yield server
    finally:
        server.stop()


def stop_sshd(server: SshServer) -> None:
    """The module-level form of `SshServer.stop`, for scripts that start one with `start_sshd`."""
    server.stop()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real sshd on 127.0.0.1 with throwaway keys; see `SshServer` for what it offers."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()
