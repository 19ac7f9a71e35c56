"""jupyter_split: one notebook, two sites. `%load_ext jupyter_split` registers the magics."""
from ._version import __version__

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
