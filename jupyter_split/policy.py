"""Data residency: labels that travel with the data, a guard at the border, an audit log.

The public face of `jupyter_split.residency`:
- `label(obj, "CN")`, `labels_of(obj)`: labels on Python objects.
- `labels_for_url(url)`: labels a location carries from `policy.resident`.
- `check_copy`, `check_objects`, `check_transfer`: the guard, raising `ResidencyError`
  before anything moves, and auditing every cross-border attempt; `check_content` and
  `check_variables_content`: the content scan of bytes bound abroad.
- `declassify(item, reason)` and `policy.allow_export`: approved exports.
- `audit_entries(decision, site, since)`: the append-only audit log.
- `start_taint_tracking`, `run_labels`, `taint_run`: taint inside a runner (and the notebook
  kernel); `carried_labels`: what `--in` variables carry into the run they feed;
  `check_cell`: a tainted kernel sends only typed cells abroad.
"""
from .residency.audit import audit_entries
from .residency.guard import (
    ResidencyError,
    check_content,
    check_copy,
    check_objects,
    check_transfer,
    check_variables_content,
    declassifications,
    declassify,
    labels_for_url,
    runner_env,
    url_label_origins,
)
from .residency.labels import label, label_origins, labels_of, receive_outputs
from .residency.kernel import carried_labels, check_cell
from .residency.taint import (
    local_site,
    outputs_labels,
    run_label_origins,
    run_labels,
    start_taint_tracking,
    stop_taint_tracking,
    taint_run,
)

__all__ = [
    "ResidencyError", "audit_entries", "carried_labels", "check_cell", "check_content", "check_copy", "check_objects", "check_transfer",
    "check_variables_content",
    "declassifications", "declassify", "label", "label_origins", "labels_for_url", "labels_of",
    "local_site", "outputs_labels", "receive_outputs", "run_label_origins", "run_labels", "runner_env",
    "start_taint_tracking", "stop_taint_tracking", "taint_run", "url_label_origins",
]
