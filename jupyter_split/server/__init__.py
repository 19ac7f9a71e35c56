"""The jupyter_server extension: REST for the JupyterLab sidebar, thin over `jupyter_split.core`."""
from __future__ import annotations

from typing import Any

from .routes import setup_handlers


def _load_jupyter_server_extension(server_app: Any) -> None:
    setup_handlers(server_app.web_app)
    server_app.log.info("jupyter_split: sidebar REST handlers at %s", "/jupyter-split/")
