"""jupyter_split: one notebook, two sites. `%load_ext jupyter_split` registers the magics."""
import warnings

from ._version import __version__

# asyncssh still names DSA key types, and recent cryptography releases warn at their import: the
# warning would land in the first cell that opens an SSH connection, and no user can act on it.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    """Register the magics, and track the kernel's reads of resident data (`residency/kernel.py`)."""
    from .magics import SplitMagics
    from .residency.kernel import start_kernel_tracking

    start_kernel_tracking(ipython)
    ipython.register_magics(SplitMagics(ipython))


def unload_ipython_extension(ipython) -> None:
    """Magics stay registered until the kernel restarts; nothing else to undo."""


def _jupyter_server_extension_points():
    return [{"module": "jupyter_split.server"}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyterlab-split"}]
