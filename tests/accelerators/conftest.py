"""The vendor tool stand-ins on PATH, for tests of the accelerators' probe and readings."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

#: the STAND-IN executables (tests/stand_ins/bin): each prints its vendor's documented format
STAND_INS = Path(__file__).resolve().parents[1] / "stand_ins" / "bin"


def stand_in_path() -> str:
    """A PATH with the stand-ins first, then this interpreter's folder (their `python3`), then the system's."""
    return os.pathsep.join([str(STAND_INS), str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-ins on this process's PATH (a local site's probe runs with this environment)."""
    monkeypatch.setenv("PATH", stand_in_path())
    monkeypatch.delenv("STANDIN_SMI_PIDS", raising=False)
    monkeypatch.delenv("STANDIN_SMI_FAIL", raising=False)
    return STAND_INS
