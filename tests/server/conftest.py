"""The server tests' jupyter_server: the jupyter_split extension loaded, over the test's home
(`split_home`). A module that needs more (a config written first, a store) defines its own."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def jp_server_config(split_home: Path) -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"jupyter_split": True}}}
