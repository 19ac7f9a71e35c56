"""Checkpoint sync between sites: incremental, verified, atomic, resumable.

`copy(src, dest)` between any two fsspec URLs; `push`/`pull` name sites from the
config; `latest(prefix)` finds the newest published checkpoint.
"""
from .endpoints import pull, push
from .engine import SyncError, SyncReport, copy
from .published import checkpoint_rows, latest
from .manifest import MANIFEST_NAME, FileEntry, HashingWriter, Manifest, ManifestError, publish, read_manifest
from .plan import PlanError

__all__ = [
    "MANIFEST_NAME", "FileEntry", "HashingWriter", "Manifest", "ManifestError", "PlanError", "SyncError",
    "SyncReport", "checkpoint_rows", "copy", "latest", "publish", "pull", "push", "read_manifest",
]


def _check_ssh_host_keys() -> None:
    """`ssh://` and `sftp://` URLs open `jupyter_split.ssh.store`'s filesystem wherever fsspec
    opens them: sshfs alone does not check the server's host key."""
    import fsspec
    from fsspec.registry import registry

    for protocol in ("ssh", "sftp"):
        if protocol in registry:  # loaded before this import: replace it now
            from ..ssh.store import VerifiedSSHFileSystem

            fsspec.register_implementation(protocol, VerifiedSSHFileSystem, clobber=True)
        else:
            fsspec.register_implementation(protocol, "jupyter_split.ssh.store.VerifiedSSHFileSystem", clobber=True,
                                           errtxt="ssh:// storage needs the ssh extra: pip install 'jupyter_split[ssh]'")


_check_ssh_host_keys()
