"""The ray executor: every run is a Ray job, submitted through Ray's Jobs API.

The job's entrypoint is the one-shot runner, started with the site's absolute python path
(a bare `python` may resolve to another interpreter on the cluster). State and, when the
runner dies without a word, the job's own logs come from the Jobs API; the output comes
from the run's event log, read here or over the site's SSH connection like the Slurm
executor's. Cards are asked for as Ray resources: GPUs for CUDA and ROCm, `NPU` for
Ascend, `MLU` for Cambricon; `ray.resources` adds custom ones.

Ray's Jobs API shows a job's environment to whoever can read the cluster's dashboard, so
secrets (the W&B key) are not sent with the job: give them to the Ray cluster itself.
"""
from __future__ import annotations

import asyncio
import json
import shlex
import time
import urllib.request
import warnings
from typing import Any

from ..config import Config, SiteConfig
from ..protocol import PAYLOAD_VAR
from .base import ExecutorError, LaunchSpec, world
from .cluster import ClusterExecutor

ACTIVE = frozenset({"PENDING", "RUNNING"})
_CARD_RESOURCES = {"npu": "NPU", "mlu": "MLU"}
_GPU_LIKE = frozenset({"cuda", "dcu", "musa"})
LOG_TAIL_LINES = 20
SUBMIT_RETRIES = (0.5, 1, 2, 4, 8)


class RayExecutor(ClusterExecutor):
    """Runs every cell as a Ray job through the Jobs API at the site's `ray.address`.

    Output is read from the run's event log. Secrets are not sent with a job, since the Jobs API shows a
    job's environment: the Ray cluster needs its own W&B key and storage credentials.
    """

    kind = "ray"

    def __init__(self, site: SiteConfig, config: Config):
        super().__init__(site, config)
        self._client: Any = None
        self._ended: dict[str, str] = {}

    async def client(self) -> Any:
        """The Jobs API client for `ray.address` (made once; it checks the server's version)."""
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise ExecutorError(f"site {self.site.name!r} runs on Ray, and Ray is not installed here: "
                                    "pip install 'jupyter_split[ray]'") from None
            address = self.site.ray.address
            try:
                self._client = await asyncio.to_thread(JobSubmissionClient, address)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"site {self.site.name!r}: cannot reach Ray's Jobs API at {address}: {exc}. "
                                    f"Check `ray.address` under [sites.{self.site.name}] and that the "
                                    "dashboard is up (ray start --head --dashboard-host ...).") from None
        return self._client

    def resources(self, spec: LaunchSpec) -> dict[str, Any]:
        """submit_job's resource arguments: one slot per rank, of the site's kind of card."""
        nproc, _ = world(spec.gpus, spec.nodes)
        args: dict[str, Any] = {}
        custom = dict(self.site.ray.resources)
        if spec.gpus:
            if self.site.accelerator in _GPU_LIKE:
                args["entrypoint_num_gpus"] = nproc
            elif self.site.accelerator in _CARD_RESOURCES:
                custom[_CARD_RESOURCES[self.site.accelerator]] = nproc
            else:
                args["entrypoint_num_cpus"] = nproc
        if custom:
            args["entrypoint_resources"] = custom
        return args

    def runtime_env(self, spec: LaunchSpec) -> dict[str, Any]:
        """The job's runtime_env: the site's `ray.runtime_env` and `env`, the run's variables, and the
        config as the runner's payload variable.

        The secrets a runner gets on stdin elsewhere are dropped, with a RuntimeWarning. Credentials found in
        the config's storage options still go, with a RuntimeWarning naming them.
        """
        payload = json.loads(spec.stdin or b"{}")
        if payload.pop("env", None):
            warnings.warn(f"site {self.site.name!r} runs on Ray, whose Jobs API shows a job's environment: "
                          "the W&B key was not sent. Set WANDB_API_KEY in the Ray cluster's own environment.",
                          RuntimeWarning, stacklevel=2)
        exposed = _credentials_in(payload.get("config", {}))
        if exposed:
            warnings.warn(f"site {self.site.name!r} runs on Ray, whose Jobs API shows a job's environment, and "
                          f"the config sent with it holds {', '.join(exposed)}: give the Ray cluster its own "
                          "storage credentials (environment, instance role) and leave them out of the config.",
                          RuntimeWarning, stacklevel=2)
        runtime_env = dict(self.site.ray.runtime_env)
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **self.site.env, **spec.env,
                                   PAYLOAD_VAR: json.dumps(payload)}
        return runtime_env

    # -- the executor contract
    async def launch(self, spec: LaunchSpec) -> dict[str, Any]:
        """Submit the runner as a Ray job whose submission id is the run id, started in the run directory.

        A cluster that just started and says to try again later is asked again, a few times. Returns
        {job_id, run_dir, started}; raises ExecutorError where Ray refuses the job.
        """
        if self.site.host:
            await self.host.ready()  # type: ignore[attr-defined]
        client = await self.client()
        # In the run directory, as on every other executor; Ray runs the entrypoint through a shell.
        entrypoint = f"cd {shlex.quote(spec.run_dir)} && exec {shlex.join(self.runner_command(spec))}"
        submit = dict(entrypoint=entrypoint, submission_id=spec.run_id, runtime_env=self.runtime_env(spec),
                      metadata={"jupyter_split_run": spec.run_id}, **self.resources(spec))
        for delay in (*SUBMIT_RETRIES, None):
            try:
                job = await asyncio.to_thread(client.submit_job, **submit)
                break
            except (RuntimeError, ValueError, OSError) as exc:
                # A cluster that just started answers before its node agents are up: that passes.
                transient = isinstance(exc, OSError) or "try again later" in str(exc)
                if delay is None or not transient:
                    raise ExecutorError(f"site {self.site.name!r}: Ray refused the run {spec.run_id}: {exc}") from None
                await asyncio.sleep(delay)
        return {"job_id": job, "run_dir": spec.run_dir, "started": time.time()}

    async def alive(self, handle: dict[str, Any]) -> bool:
        """Whether the job is PENDING or RUNNING.

        For an ended job, its status, message and last lines of output are kept for `exit_reason`; a job the
        cluster does not know (a restarted cluster) counts as ended.
        """
        job = handle.get("job_id")
        if not job:
            return False
        client = await self.client()
        try:
            info = await asyncio.to_thread(client.get_job_info, job)
        except RuntimeError:
            self._ended[job] = "is unknown to the Ray cluster (was the cluster restarted?)"
            return False
        status = str(getattr(info.status, "value", info.status))
        if status in ACTIVE:
            return True
        if job not in self._ended:
            logs = await asyncio.to_thread(client.get_job_logs, job)
            tail = "\n".join(logs.strip().splitlines()[-LOG_TAIL_LINES:])
            self._ended[job] = (f"(Ray job {job}) ended {status}: {info.message or ''}".rstrip(": ")
                                + (f"\nthe job's last output:\n{tail}" if tail else ""))
        return False

    def exit_reason(self, handle: dict[str, Any]) -> str | None:
        """How the job ended (status, message, its last output), once `alive` saw it end; else None."""
        return self._ended.get(handle.get("job_id", ""))

    async def signal(self, handle: dict[str, Any], sig: str) -> None:
        """Stop the job, whichever of INT, TERM and KILL is asked; ValueError for any other signal."""
        # The Jobs API can only stop a job (SIGTERM, then SIGKILL): an interrupt ends the run too.
        if sig not in ("INT", "TERM", "KILL"):
            raise ValueError(f"signal {sig!r} is not one of INT, TERM, KILL")
        job = handle.get("job_id")
        if job and await self.alive(handle):
            client = await self.client()
            await asyncio.to_thread(client.stop_job, job)

    async def describe(self) -> dict[str, Any]:
        """The host's row, plus the Ray version the dashboard reports. Raises ExecutorError, naming the
        address and the fix, where the Jobs API does not answer."""
        row = await self.host.describe()
        await self.client()  # names the address and the fix when the Jobs API does not answer
        row["ray"] = (await asyncio.to_thread(_server_versions, self.site.ray.address)).get("ray_version")
        return row

    async def reconnect(self) -> None:
        """Drop the Jobs API client (made again on next use) and reconnect the host."""
        self._client = None
        await super().reconnect()


_CREDENTIAL_WORDS = ("key", "secret", "token", "password", "credential")


def _credentials_in(config: dict[str, Any]) -> list[str]:
    """`sites.X.storage_options...` entries whose names say they hold a credential."""
    found = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if any(word in str(key).lower() for word in _CREDENTIAL_WORDS) and isinstance(item, str):
                    found.append(f"{path}.{key}")
                walk(item, f"{path}.{key}")

    for name, site in config.get("sites", {}).items():
        walk(site.get("storage_options", {}), f"sites.{name}.storage_options")
    return found


def _server_versions(address: str) -> dict[str, Any]:
    """The dashboard's own versions (Ray's, the Jobs API's), from its public /api/version."""
    with urllib.request.urlopen(f"{address.rstrip('/')}/api/version", timeout=10) as reply:
        return json.loads(reply.read())


EXECUTOR = RayExecutor
