"""W&B on both sides: one experiment whose runs abroad and at home share a group.

The runner's environment carries the W&B context (project, group, job type, tags,
mode, server), so a plain `wandb.init()` in a cell joins the experiment. Keys
travel separately, over the runner's stdin (`runner_secrets`). Nothing here at
import time touches wandb: the core builds every runner's environment with it.
"""
from __future__ import annotations

import contextlib
import hashlib
import netrc
import os
import posixpath
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlparse

from ..config import Config, SiteConfig, load_config

if TYPE_CHECKING:
    from ..sync.manifest import Manifest

#: W&B's own cloud; its data lives in the United States.
CLOUD_URL = "https://api.wandb.ai"
CLOUD_JURISDICTION = "US"


def _tag(key: str, value: str) -> str:
    # W&B tags are at most 64 characters and the env var is comma separated.
    clean = re.sub(r"[,\s]+", "_", value)
    return f"{key}:{clean}"[:64]


def site_tags(site: SiteConfig) -> list[str]:
    """The W&B tags that say where a run ran: site, jurisdiction and accelerator (64 characters at most)."""
    return [_tag("site", site.name), _tag("jurisdiction", site.jurisdiction), _tag("accelerator", site.accelerator)]


def project(config: Config, site: SiteConfig) -> str:
    """The W&B project a site's runs go to: the site's `wandb.project`, else the experiment's name."""
    return site.wandb.project or config.experiment.name


def job_type(site: SiteConfig, name: str | None) -> str:
    """The cell's `--name`, else the site's name as the phase (training abroad, tuning at home)."""
    return (name or site.name)[:64]


def runner_env(config: Config, site: SiteConfig, run_id: str, name: str | None,
               run_dir: str | None = None) -> dict[str, str]:
    """The W&B context for a cell on `site`: no secrets, safe to appear in job specs.

    With `run_dir`, W&B writes its run files under `<run_dir>/wandb`, where
    `%split wandb` finds them.
    """
    env = {
        "WANDB_PROJECT": project(config, site),
        "WANDB_RUN_GROUP": config.experiment.name,
        "WANDB_JOB_TYPE": job_type(site, name),
        "WANDB_TAGS": ",".join(site_tags(site)),
        "WANDB_MODE": mode(config, site),
        "WANDB_NAME": run_id,
    }
    if run_dir:
        env["WANDB_DIR"] = run_dir
    if site.wandb.base_url:
        env["WANDB_BASE_URL"] = site.wandb.base_url
    if site.wandb.entity:
        env["WANDB_ENTITY"] = site.wandb.entity
    return env


def mode(config: Config, site: SiteConfig) -> str:
    """The site's W&B mode; a home site whose server is abroad logs offline when the policy
    limits the metrics that may go abroad, so they leave only through `wandb sync`."""
    home = config.home.jurisdiction
    if (site.wandb.mode == "online" and site.jurisdiction == home and server_jurisdiction(site) != home
            and config.policy.metrics_abroad is not None):
        return "offline"
    return site.wandb.mode


def server_url(site: SiteConfig) -> str:
    """The W&B server a site logs to: its `wandb.base_url`, else W&B's cloud; no trailing slash."""
    return (site.wandb.base_url or CLOUD_URL).rstrip("/")


def server_jurisdiction(site: SiteConfig) -> str:
    """Where the W&B server this site logs to keeps its data.

    `wandb.jurisdiction` when set; W&B's cloud is in the US; a self-hosted server
    (`wandb.base_url`) is taken to sit in the site's own jurisdiction.
    """
    if site.wandb.jurisdiction:
        return site.wandb.jurisdiction
    return CLOUD_JURISDICTION if site.wandb.base_url is None else site.jurisdiction


def key_variable(site_name: str) -> str:
    """The variable that holds the key for one site's W&B server."""
    return "WANDB_API_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", site_name).upper()


def api_key(site: SiteConfig) -> str | None:
    """The key for the site's W&B server: `$WANDB_API_KEY_<SITE>`, `$WANDB_API_KEY`, then ~/.netrc."""
    for var in (key_variable(site.name), "WANDB_API_KEY"):
        if os.environ.get(var):
            return os.environ[var]
    host = urlparse(server_url(site)).hostname or ""
    try:
        entry = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry else None


def runner_secrets(site: SiteConfig) -> dict[str, str]:
    """Secrets for the runner's stdin: the W&B key, only for a site that logs online."""
    if site.wandb.mode != "online":
        return {}
    key = api_key(site)
    return {"WANDB_API_KEY": key} if key else {}


# -- inside a runner: the cell's own W&B run and its checkpoints ------------------------

#: set by the core for every runner
SITE_VAR = "JUPYTER_SPLIT_SITE"
#: the run config key under which a run records the checkpoints it used (offline lineage)
USED_KEY = "split_used_checkpoints"


def current_site(config: Config | None = None) -> SiteConfig:
    """The site this process runs on: the runner's (`$JUPYTER_SPLIT_SITE`), else the home site."""
    config = config or load_config()
    name = os.environ.get(SITE_VAR)
    return config.site(name) if name else config.home


def code_sha256(code: str) -> str:
    """The hex sha256 of a cell's source, logged in the run's config so a run can be matched to its code."""
    return hashlib.sha256(code.encode()).hexdigest()


class CellRun:
    """The W&B run `--wandb` opens around one cell; set `exit_code` when the cell failed."""

    def __init__(self, run: Any = None):
        self.run = run
        self.exit_code = 0


@contextlib.contextmanager
def cell_run(meta: dict[str, Any]) -> Iterator[CellRun]:
    """Start a W&B run for one cell, logging where and what ran, and finish it after.

    `meta`: run_id, site, code, and optionally name, host, device, versions, run_dir.
    Project, group, job type, tags, mode and server come from the runner's environment.
    When W&B cannot start here, the cell still runs, untracked, and says why on stderr.
    """
    handle = CellRun(_start(meta))
    try:
        yield handle
    except BaseException:
        handle.exit_code = 1
        raise
    finally:
        if handle.run is not None:
            handle.run.finish(exit_code=handle.exit_code)


def _start(meta: dict[str, Any]) -> Any | None:
    site = str(meta.get("site") or "?")
    where = f"site {site!r}"
    try:
        import wandb
    except ImportError:
        print(f"--wandb: wandb is not installed on {where}; install it there (pip install 'jupyter_split[wandb]'). "
              "This cell runs without a W&B run.", file=sys.stderr)
        return None
    config = {
        "split": {
            "run_id": meta["run_id"], "site": site, "host": meta.get("host"),
            "device": meta.get("device"), "versions": meta.get("versions", {}),
            "code_sha256": code_sha256(meta.get("code", "")),
        }
    }
    # A cell on many ranks is one W&B run: rank 0's. The others get a disabled run, so
    # `wandb.log` in the cell works on every rank and records once.
    mode = None if os.environ.get("RANK", "0") == "0" else "disabled"
    try:
        return wandb.init(dir=meta.get("run_dir"), name=meta["run_id"], job_type=meta.get("name") or None,
                          config=config, reinit="finish_previous", mode=mode)
    except Exception as exc:  # W&B's own errors (no key, server unreachable) are many types
        print(f"--wandb: W&B could not start on {where}: {type(exc).__name__}: {exc}\n"
              f"Check the site's wandb settings and its key (${key_variable(site)} or "
              "$WANDB_API_KEY, sent to online sites only). This cell runs without a W&B run.", file=sys.stderr)
        return None


@contextlib.contextmanager
def cell_tracking(request: dict[str, Any], run_dir: str | os.PathLike[str], info: dict[str, Any],
                  device: Any) -> Iterator[CellRun]:
    """What the runner wraps every cell in: `cell_run` for a `--wandb` cell, else nothing but the
    W&B housekeeping that makes a plain `wandb.init()` in a session cell see this cell's context."""
    _resolve_accelerator_tag(device)
    try:
        if not request.get("wandb"):
            yield CellRun()
            return
        with cell_run({
            "run_id": request["run_id"], "site": request.get("site"), "code": request.get("code", ""),
            "name": request.get("name"), "host": info.get("host"), "device": str(device),
            "versions": {k: info.get(k) for k in ("python", "torch", "cloudpickle", "jupyter_split")},
            "run_dir": os.fspath(run_dir),
        }) as handle:
            yield handle
    finally:
        _settle()


def _resolve_accelerator_tag(device: Any) -> None:
    # A site set to `auto` is tagged with what the runner found there (cuda, npu, cpu...).
    tags = os.environ.get("WANDB_TAGS", "")
    if device is not None and "accelerator:auto" in tags.split(","):
        os.environ["WANDB_TAGS"] = tags.replace("accelerator:auto", _tag("accelerator", str(device).split(":")[0]))


def _settle() -> None:
    # `finish` returns before W&B has written the run file, and wandb reads WANDB_* once per
    # process. With no run left open, tearing W&B down completes the files (the runner lists
    # them next) and lets the session's next cell start W&B with its own job type and folder.
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is None:
        wandb.teardown()


def run_files(run_dir: str | os.PathLike[str]) -> list[str]:
    """The W&B run files under `run_dir`, relative to it (the runner lists them in `status.json`)."""
    root = Path(run_dir)
    found = sorted(root.glob("wandb/*run-*/run-*.wandb"))
    return [p.relative_to(root).as_posix() for p in found if p.parent.name.startswith(("offline-run-", "run-"))]


# -- checkpoints as artifacts ---------------------------------------------------------

#: schemes whose references W&B checksums itself (ETags, md5) when its client can reach the store;
#: others, and those it cannot reach, carry the manifest's sha256 as their digest
NATIVE_SCHEMES = frozenset({"s3", "gs", "file"})


def manifest_sha256(manifest: Manifest) -> str:
    """sha256 over the manifest's file entries: the same for every copy of one checkpoint."""
    lines = sorted(f"{e.path}\t{e.size}\t{e.sha256}\n" for e in manifest.files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def artifact_name(url: str) -> str:
    """The W&B artifact name of the checkpoint at `url`: `ckpt-` and its folder name, made safe for W&B.

    Every copy of a checkpoint in a folder of the same name gets the same name, on any site.
    """
    base = posixpath.basename(urlparse(url).path.rstrip("/")) or "checkpoint"
    return "ckpt-" + re.sub(r"[^A-Za-z0-9._-]", "_", base)[:120]


def build_artifact(url: str, manifest: Manifest, labels: set[str] | None = None) -> Any:
    """A W&B artifact that references the checkpoint at `url` without uploading its bytes.

    `metadata["digest"]` says who vouches for the content: `wandb` (W&B checksummed the
    objects itself) or `manifest` (one reference whose digest is `manifest_sha256`).
    """
    import wandb
    from wandb.sdk.artifacts.artifact_manifest_entry import ArtifactManifestEntry

    sha = manifest_sha256(manifest)
    metadata = {
        "url": url, "manifest_sha256": sha, "labels": sorted(set(manifest.labels) | (labels or set())),
        "parents": manifest.parents, "producer_run": manifest.run_id, "producer_site": manifest.site,
        "files": len(manifest.files), "bytes": manifest.total_bytes,
    }
    if (urlparse(url).scheme or "file") in NATIVE_SCHEMES:
        artifact = wandb.Artifact(artifact_name(url), type="model", metadata={**metadata, "digest": "wandb"})
        try:
            artifact.add_reference(url if "://" in url else Path(url).resolve().as_uri())
            return artifact
        except Exception:  # noqa: BLE001 - whatever W&B's store client fails with
            pass  # it reads its own AWS_*/GOOGLE_* settings, not the site's storage_options
    artifact = wandb.Artifact(artifact_name(url), type="model", metadata={**metadata, "digest": "manifest"})
    name = posixpath.basename(urlparse(url).path.rstrip("/")) or "checkpoint"
    artifact.manifest.add_entry(ArtifactManifestEntry(path=name, digest=sha, ref=url, size=manifest.total_bytes))
    return artifact


def active_run() -> Any | None:
    """The W&B run open in this process, without importing wandb when no cell did."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def log_checkpoint(url: str, manifest: Manifest, run: Any | None = None) -> Any | None:
    """Log a published checkpoint as a reference artifact of the open W&B run; None when none is open.

    Online, a labelled checkpoint (its manifest's labels, or the run's taint) goes only to
    a W&B server in a jurisdiction of its labels: the residency guard decides and audits,
    and a refusal is a warning and no artifact. Offline, nothing leaves this machine: the
    artifact is recorded in the run file, and `jupyter-split wandb sync` asks the guard.
    """
    run = run or active_run()
    if run is None:
        return None
    labels = set(manifest.labels) | _run_labels()
    if not run.offline and not _may_send(url, labels, manifest):
        return None
    artifact = build_artifact(url, manifest, labels)
    run.log_artifact(artifact, aliases=["latest", "sha-" + manifest_sha256(manifest)[:16]])
    return artifact


def use_checkpoint(url: str, manifest: Manifest, run: Any | None = None) -> None:
    """Record in the open W&B run (if any) that it used the checkpoint at `url` (loaded or pulled it).

    The run's config lists it under `split_used_checkpoints`; online it is also a used
    artifact (where the guard allows). Offline, where W&B cannot record a use,
    `jupyter-split wandb sync` does.
    """
    run = run or active_run()
    if run is None:
        return
    entry = {"url": url, "artifact": artifact_name(url), "sha256": manifest_sha256(manifest),
             "producer_run": manifest.run_id, "producer_site": manifest.site}
    used = [u for u in run.config.get(USED_KEY, []) if u.get("url") != url] + [entry]
    run.config.update({USED_KEY: used}, allow_val_change=True)
    labels = set(manifest.labels) | _run_labels()
    if not run.offline and _may_send(url, labels, manifest):
        run.use_artifact(build_artifact(url, manifest, labels))


def _may_send(url: str, labels: set[str], manifest: Manifest) -> bool:
    """The guard, for an online run: a refusal is audited and shown as a warning, not raised,
    because the checkpoint itself was saved or loaded; only its W&B artifact stays back."""
    from ..policy import ResidencyError

    try:
        guard_artifact(url, current_site(), labels, manifest.total_bytes)
    except ResidencyError as exc:
        warnings.warn(f"{exc}\nThe checkpoint itself is not affected; only its W&B artifact was kept back.", stacklevel=3)
        return False
    return True


def checkpoint_copied(src: str, manifest: Manifest) -> None:
    """After a copy: a checkpoint fetched from another site's storage is one this run uses."""
    if active_run() is None:
        return
    site = current_site()
    own = (site.storage or "").rstrip("/")
    if not own or not src.rstrip("/").startswith(own + "/"):
        use_checkpoint(src, manifest)


def _run_labels() -> set[str]:
    from ..policy import run_labels

    return run_labels()


def guard_artifact(url: str, target: SiteConfig, labels: set[str], nbytes: int, config: Config | None = None) -> None:
    """Ask the residency guard whether the artifact of checkpoint `url` may go to `target`'s W&B server."""
    from ..policy import check_transfer

    check_transfer(artifact_name(url), labels, kind="wandb-artifact", dest=server_url(target),
                   to_jurisdiction=server_jurisdiction(target), to_site=target.name, src=url,
                   nbytes=nbytes, config=config)
