"""The executor contract: how a runner is started, watched, signalled and read on a site.

Every executor is a thin adapter over a real tool (a subprocess, asyncssh, sbatch,
Ray's Jobs API). The core (`jupyter_split.core`) drives runs only through this class.
Paths are paths *on the site*; handles are small JSON-able dicts stored in the run index.
"""
from __future__ import annotations

import asyncio
import hashlib
import posixpath
import re
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..accelerators.devices import VISIBLE_DEVICES_VAR
from ..errors import DistributedError, ExecutorError
from ..protocol import LAUNCHER_MODULE, RUNNER_MODULE
if TYPE_CHECKING:  # the config's models take most of a short command's start-up: not imported to read a log
    from ..config import Config, SiteConfig

# a run id as `runs.ids.new_run_id` makes it (the experiment's and the site's names, a time, hex digits)
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,250}")


#: what a runner's command line holds (a cell on several ranks runs under torchrun through
#: `jupyter_split.runner.launcher`): `alive` checks against a reused pid look for one of these
RUNNER_MARKERS = (RUNNER_MODULE.encode(), LAUNCHER_MODULE.encode())


SOCKET_PATH_MAX = 100


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
    argv = ["-m", LAUNCHER_MODULE, "launch", "--nproc", str(nproc), "--nnodes", str(nnodes)]
    return argv + (["--rdzv", multi_node] if nnodes > 1 else [])


@dataclass
class LaunchSpec:
    """One runner process to start on a site."""

    run_id: str
    run_dir: str
    argv: list[str]                      # arguments after `<python> -m jupyter_split.runner`
    env: dict[str, str] = field(default_factory=dict)      # not secret: may appear in job specs
    stdin: bytes = b""                   # secrets and the config: only ever over this channel
    gpus: int | None = None
    nodes: int | None = None
    name: str | None = None


class Executor(ABC):
    """How one site runs runners: start one, say whether it lives, signal it, read its files.

    One subclass per kind of site (`local`, `ssh`, `slurm`, `ray`), registered by `kind`;
    the core drives every site through these methods alone."""

    kind: str = ""
    #: whether a long-lived session runner with a socket can be reached (local, ssh)
    supports_sessions: bool = True
    #: every runner starts under the launcher (a batch job's payload comes through its environment)
    always_launcher: bool = False
    #: how the nodes of a multi-node cell find each other (`slurm`); None: one machine
    multi_node: str | None = None

    def __init__(self, site: SiteConfig, config: Config):
        self.site = site
        self.config = config

    @property
    def site_name(self) -> str:
        """The site's name (what `core.replay` keys the places it read to)."""
        return self.site.name

    @property
    @abstractmethod
    def workdir(self) -> str:
        """The site's working directory, absolute, on the site."""

    @property
    @abstractmethod
    def python(self) -> str:
        """The interpreter that runs the runner on the site."""

    def path(self, *parts: str) -> str:
        """Where `parts` lie on the site: under the workdir, joined with `/` whatever this machine uses."""
        return posixpath.join(self.workdir, *parts)

    def socket_path(self, name: str) -> str:
        """Where a runner listens: under the workdir when that fits a unix socket's name limit
        (108 bytes on Linux, 104 on macOS), else in a private folder under /tmp named for the
        workdir (the runner refuses one that another user owns)."""
        path = self.path("sock", name)
        if len(path.encode()) < SOCKET_PATH_MAX:
            return path
        digest = hashlib.sha256(self.workdir.encode()).hexdigest()[:12]
        return posixpath.join("/tmp", f"jupyter_split-{digest}", name)

    def runner_command(self, spec: LaunchSpec) -> list[str]:
        """The runner's command line; a cell on several ranks (and every cluster job) starts under
        the launcher (`runner/launcher.py`), which runs torchrun where there is more than one rank."""
        if self.always_launcher or (spec.gpus or 1) > 1 or (spec.nodes or 1) > 1:
            return [self.python, *launch_args(spec.gpus, spec.nodes, self.multi_node), "--", *spec.argv]
        return [self.python, "-m", RUNNER_MODULE, *spec.argv]

    def site_environment(self, spec: LaunchSpec) -> dict[str, str]:
        """The variables a runner gets on top of the site's own: the site's `env`, the run's, and
        the accelerator's visible-devices variable where the site sets `visible_devices`."""
        env = {**self.site.env, **spec.env}
        var = VISIBLE_DEVICES_VAR.get(self.site.accelerator)
        if var and self.site.visible_devices is not None:
            env[var] = self.site.visible_devices
        return env

    def quoted(self, argv: list[str]) -> str:
        """A command line for a remote shell: every word quoted, never interpolated."""
        return shlex.join(argv)

    @abstractmethod
    async def probe(self) -> dict[str, Any]:
        """Versions on the site (`protocol.versions`): python, cloudpickle, torch, jupyter_split, host."""

    @abstractmethod
    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        """Start a runner detached from this process; return its handle (pid, job id, socket)."""

    @abstractmethod
    async def alive(self, handle: dict[str, Any]) -> bool:
        """Whether the runner behind `handle` is still running (or queued)."""

    def exit_reason(self, handle: dict[str, Any]) -> str | None:
        """How the runner behind `handle` ended, where this executor saw it (exit status, the job's
        state); None where it cannot tell."""
        return None

    async def doctor(self) -> dict[str, Any] | None:
        """For `%split doctor`: what this executor found and did to make its site ready (the SSH
        executor installs jupyter_split there); None where there is nothing to prepare."""
        return None

    @abstractmethod
    async def signal(self, handle: dict[str, Any], sig: str) -> None:
        """Send INT, TERM or KILL to the runner's process group (or the job)."""

    async def open_channel(self, sock_path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream to the runner's unix socket (the live channel)."""
        raise ExecutorError(f"the {self.kind} executor has no live channel; the event log is read instead")

    def reaches(self, sock_path: str) -> bool:
        """Whether a channel to the runner at `sock_path` is known open now, so it lives without asking
        (`alive` costs a round trip on a remote site); False where none is kept."""
        return False

    @abstractmethod
    async def read_file(self, path: str, offset: int = 0, size: int | None = None) -> bytes:
        """Bytes of a file on the site from `offset` (below 0: from its end, as `seek(offset, 2)`),
        at most `size` of them (None: to the end); FileNotFoundError if it is absent."""

    async def file_info(self, path: str) -> tuple[int, float] | None:
        """A file's (size, modification time) on the site, a token of whether it changed; None where it is
        absent or the executor cannot tell (the caller then reads it)."""
        return None

    @abstractmethod
    async def write_file(self, path: str, data: bytes) -> None:
        """Write a file on the site atomically (temp file, then rename), creating folders."""

    async def wide_above(self) -> int | None:
        """--in and --out payloads above this many bytes go as files over `write_payload` and
        `read_payload` (a far SSH site's several connections); None: every payload goes the one way."""
        return None

    async def write_payload(self, path: str, chunks: Iterable[memoryview], size: int,
                            on_bytes: Callable[[int], None] | None = None) -> None:
        """Write a payload of `size` bytes (`chunks`, in order) to a file on the site, whole or not at all;
        `on_bytes(n)` as bytes arrive."""
        await self.write_file(path, b"".join(chunks))
        if on_bytes is not None:
            on_bytes(size)

    async def read_payload(self, path: str, size: int,
                           on_bytes: Callable[[int], None] | None = None) -> bytes | bytearray:
        """The payload file at `path` on the site, of `size` bytes (FileNotFoundError if it is absent);
        `on_bytes(n)` as bytes arrive."""
        data = await self.read_file(path)
        if on_bytes is not None:
            on_bytes(len(data))
        return data

    def run_dir_to_remove(self, run_dir: str, run_id: str) -> str:
        """`run_dir` if it is run `run_id`'s own folder on this site (`<workdir>/runs/<run_id>`);
        ExecutorError otherwise: a run index row edited by hand, or from another config, never
        makes a prune delete anything but a run directory."""
        expected = self.path("runs", run_id)
        if not _RUN_ID.fullmatch(run_id) or posixpath.normpath(run_dir) != expected:
            raise ExecutorError(f"not removing {run_dir!r}: run {run_id!r} of site {self.site.name!r} would live in "
                                f"{expected!r}, and only a run's own folder there is removed. Remove it by hand "
                                "if it is no longer needed.")
        return expected

    async def remove_run_dir(self, run_dir: str, run_id: str) -> None:
        """Delete run `run_id`'s folder on the site (checked by `run_dir_to_remove`); nothing if it is gone."""
        raise ExecutorError(f"the {self.kind} executor cannot remove run directories")

    async def describe(self) -> dict[str, Any]:
        """Reachability and what the site offers, for `%split sites` and the sidebar."""
        return {"reachable": True}

    async def reconnect(self) -> None:
        """Re-establish a dropped connection (a no-op where there is none)."""

    async def close(self) -> None:
        """Release connections held for this site."""
