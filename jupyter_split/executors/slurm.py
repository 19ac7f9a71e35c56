"""The slurm executor: every run is a batch job whose batch step is a one-shot runner.

Slurm's own commands do the work (sbatch, scontrol, scancel; sacct where accounting
exists), on this machine when the site has no `host`, else on the login node over the
site's SSH connection (the ssh executor's, shared). Files in the run directory move the
same way. Secrets and the config travel in the job's environment (sbatch's process
environment, kept by Slurm across a requeue), never on a command line or in a file.

Preemption: the job asks for a warning signal (`slurm.signal`, `USR2@90`); the runner then
calls the cell's `on_preempt` hooks and requeues the job, and the run's event log goes on
under the same run id when the job starts again (see `jupyter_split.runner.preempt`).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import Any

from ..config import Config, SiteConfig
from ..protocol import PAYLOAD_VAR, slurm_signal
from .base import ExecutorError, LaunchSpec, world
from .cluster import ClusterExecutor

#: job states in which the runner is running or will run (again)
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED",
                    "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"})
#: how each accelerator's cards are asked for (GPUs by --gpus-per-node, others by generic resource)
_CARDS = {"cuda": "--gpus-per-node={n}", "dcu": "--gpus-per-node={n}", "musa": "--gpus-per-node={n}",
          "auto": "--gpus-per-node={n}", "npu": "--gres=npu:{n}", "mlu": "--gres=mlu:{n}"}
#: seconds a job's state is reused before slurmctld is asked again (following a run polls it)
STATE_TTL = 2.0
_SCANCEL = {"INT": ["--signal=INT", "--full"], "TERM": [], "KILL": ["--signal=KILL", "--full"]}
# Runs under the login node's python: sbatch with the secrets in its environment, read from stdin.
_SUBMIT = r"""
import json, os, subprocess, sys
job = json.loads(sys.stdin.buffer.read())
done = subprocess.run(job["argv"], input=job["script"].encode(), capture_output=True,
                      env={**os.environ, **job["env"]})
sys.stdout.buffer.write(done.stdout); sys.stderr.buffer.write(done.stderr)
sys.exit(done.returncode)
"""


class SlurmExecutor(ClusterExecutor):
    """Runs every cell as a Slurm batch job, with Slurm's commands here or on the login node over SSH.

    Output is read from the run's event log. Secrets and the config travel in the job's environment. The
    job asks for a warning signal before preemption and is requeued under the same run id. A cell on
    several nodes runs one torchrun per node, meeting at the first node.
    """

    kind = "slurm"
    multi_node = "slurm"

    def __init__(self, site: SiteConfig, config: Config):
        super().__init__(site, config)
        self._seen: dict[str, dict[str, str]] = {}
        self._checked: dict[str, float] = {}

    # -- Slurm's commands, here or on the login node
    async def command(self, argv: list[str], input: bytes | None = None,
                      env: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Run a Slurm command with the site's `env` (e.g. SLURM_CONF); `env` here may hold secrets."""
        if self.site.host:
            conn = self.host.connection  # type: ignore[attr-defined]
            if env:
                job = {"argv": argv, "script": (input or b"").decode(), "env": {**self.site.env, **env}}
                argv, input = [self.python, "-c", _SUBMIT], json.dumps(job).encode()
            done = await conn.run(argv, input=input, timeout=max(60.0, self.site.connect_timeout * 4),
                                  env=None if env else self.site.env)
            return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, **self.site.env, **(env or {})})
        except FileNotFoundError:
            raise ExecutorError(
                f"site {self.site.name!r}: {argv[0]} not found on this machine. Install Slurm's client "
                f"commands here, or set `host` under [sites.{self.site.name}] to submit on the login node."
            ) from None
        out, err = await proc.communicate(input)
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    def sbatch_options(self, spec: LaunchSpec) -> list[str]:
        """sbatch's options for this run: the site's `slurm` table, then the cell's --gpus/--nodes."""
        opts = self.site.slurm
        name = re.sub(r"[^A-Za-z0-9._-]", "_", spec.name or spec.run_id)[:100]
        argv = [f"--job-name={name}", f"--output={spec.run_dir}/runner.log", "--open-mode=append",
                f"--chdir={spec.run_dir}", f"--signal={slurm_signal(opts.signal)}",
                "--requeue" if opts.requeue else "--no-requeue"]
        for key in ("partition", "time", "account", "qos", "constraint"):
            value = getattr(opts, key)
            if value:
                argv.append(f"--{key}={value}")
        nproc, nnodes = world(spec.gpus, spec.nodes)
        if spec.gpus or spec.nodes:
            argv += [f"--nodes={nnodes}", f"--ntasks-per-node={nproc}"]
            card = _CARDS.get(self.site.accelerator)
            if spec.gpus and card:
                argv.append(card.format(n=nproc))
        for line in opts.extra:
            if not line.startswith("--") or "\n" in line:
                raise ExecutorError(
                    f"site {self.site.name!r}: slurm.extra entry {line!r} is not one sbatch option; "
                    "write each as its own string starting with \"--\", e.g. extra = [\"--exclusive\", \"--mem=0\"]")
            argv.append(line)
        return argv

    def batch_script(self, spec: LaunchSpec) -> str:
        """The job's script: exec the runner's command line; on several nodes, through one srun
        step that starts one torchrun per node."""
        command = self.quoted(self.runner_command(spec))
        nodes = world(spec.gpus, spec.nodes)[1]
        if nodes > 1:
            # One torchrun per node, meeting at the first node (c10d rendezvous). Its step takes
            # every CPU of the node: torchrun's ranks share them (a step gets all the job's cards).
            command = (f'srun --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 '
                       f'--cpus-per-task="$SLURM_CPUS_ON_NODE" --kill-on-bad-exit=1 {command}')
        return "#!/bin/sh\nexec " + command + "\n"

    # -- the executor contract
    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        """sbatch the run, its secrets and config in the job's environment (never a command line or a
        file). Returns {job_id, run_dir, started}; raises ExecutorError with sbatch's error where it refuses."""
        if self.site.host:
            await self.host.ready()  # type: ignore[attr-defined]
        env = {**self.site.env, **spec.env, PAYLOAD_VAR: spec.stdin.decode().strip()}
        argv = ["sbatch", "--parsable", *self.sbatch_options(spec)]
        code, out, err = await self.command(argv, self.batch_script(spec).encode(), env)
        if code != 0:
            raise ExecutorError(f"site {self.site.name!r}: sbatch refused the run {spec.run_id} "
                                f"(exit {code}): {err.strip()[-2000:]}")
        job = out.strip().splitlines()[-1].split(";")[0]
        return {"job_id": job, "run_dir": spec.run_dir, "started": time.time()}

    async def job_state(self, job: str) -> dict[str, str]:
        """JobState, Reason, Restarts and ExitCode from scontrol, else sacct, else {} (unknown)."""
        checked = self._checked.get(job, float("-inf"))
        if time.monotonic() - checked < STATE_TTL and job in self._seen:
            return self._seen[job]  # a login node's controller is shared: ask it sparingly
        self._checked[job] = time.monotonic()
        code, out, _ = await self.command(["scontrol", "show", "job", "-o", job])
        if code == 0 and "JobState=" in out:
            fields = dict(re.findall(r"(\w+)=(\S*)", out))
        else:
            # Ended long enough ago that the controller forgot it: accounting may still know.
            code, out, _ = await self.command(["sacct", "-n", "-P", "-X", "-j", job, "-o", "State,ExitCode"])
            line = out.strip().splitlines()[0] if code == 0 and out.strip() else ""
            fields = dict(zip(("JobState", "ExitCode"), line.split("|"))) if line else {}
        if fields:
            fields["JobState"] = fields["JobState"].split()[0]
            self._seen[job] = fields
        return fields

    async def alive(self, handle: dict[str, Any]) -> bool:
        """Whether the job is in a state where its runner runs or will run again (pending, running,
        requeued, suspended...). A state is reused for STATE_TTL seconds, to spare slurmctld."""
        job = handle.get("job_id")
        if not job:
            return False
        return (await self.job_state(job)).get("JobState") in ACTIVE

    def exit_reason(self, handle: dict[str, Any]) -> str | None:
        """The job's last state seen, its exit code and reason, and where its runner.log is; None
        where the job was never seen."""
        seen = self._seen.get(handle.get("job_id", ""))
        if not seen:
            return None
        return (f"(Slurm job {handle['job_id']}) ended {seen['JobState']} with exit code "
                f"{seen.get('ExitCode', '?')}, reason {seen.get('Reason', 'None')}; see "
                f"{handle.get('run_dir', 'the run directory')}/runner.log on the site")

    async def signal(self, handle: dict[str, Any], sig: str) -> None:
        """Signal the job through scancel: INT and KILL reach every process of the job, TERM cancels
        the job. Nothing where the job has ended; ValueError for any other signal."""
        if sig not in _SCANCEL:
            raise ValueError(f"signal {sig!r} is not one of {', '.join(_SCANCEL)}")
        job = handle.get("job_id")
        if job and await self.alive(handle):
            await self.command(["scancel", *_SCANCEL[sig], job])

    async def describe(self) -> dict[str, Any]:
        """The host's row, plus sinfo's partitions; not reachable where sinfo fails."""
        row = await self.host.describe()
        code, out, err = await self.command(["sinfo", "-h", "-o", "%P %a %D %T"])
        row["slurm"] = out.strip().splitlines() if code == 0 else f"sinfo failed: {err.strip()}"
        row["reachable"] = row.get("reachable", True) and code == 0
        return row


EXECUTOR = SlurmExecutor
