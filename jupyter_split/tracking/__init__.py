"""Weights & Biases on both sides, as one experiment: `context` (a cell's run, the server a site may
send to, checkpoint artifacts), `sites` (syncing each site's offline runs), `offline` (reading an
offline run's files)."""
from .context import (CLOUD_JURISDICTION, CLOUD_URL, NATIVE_SCHEMES, SITE_VAR, USED_KEY, CellRun, active_run, api_key,
                      artifact_name, build_artifact, cell_run, cell_tracking, checkpoint_copied, code_sha256, current_site,
                      guard_artifact, job_type, key_variable, log_checkpoint, manifest_sha256, mode, project, run_files,
                      runner_env, runner_secrets, server_jurisdiction, server_url, site_tags, use_checkpoint)

__all__ = ["CLOUD_JURISDICTION", "CLOUD_URL", "NATIVE_SCHEMES", "SITE_VAR", "USED_KEY", "CellRun", "active_run",
           "api_key", "artifact_name", "build_artifact", "cell_run", "cell_tracking", "checkpoint_copied",
           "code_sha256", "current_site", "guard_artifact", "job_type", "key_variable", "log_checkpoint",
           "manifest_sha256", "mode", "project", "run_files", "runner_env", "runner_secrets", "server_jurisdiction",
           "server_url", "site_tags", "use_checkpoint"]
