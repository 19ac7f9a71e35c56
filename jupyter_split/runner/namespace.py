"""A cell's namespace: the names the runner predefines, found only when a cell first uses them."""
from __future__ import annotations

from typing import Any


class PredefinedNamespace(dict):
    """A cell's namespace in which `device`, `dtype` and `dist_backend` appear on first use.

    Finding them means probing the accelerator, which imports torch (a second or more);
    a cell that never names them never pays for it. Python looks names up through
    `__missing__` when a namespace is a dict subclass, at module level and in functions.
    """

    NAMES = ("device", "dtype", "dist_backend")

    def __init__(self, accelerator: str):
        super().__init__()
        self.accelerator = accelerator

    def __missing__(self, key: str) -> Any:
        if key not in self.NAMES:
            raise KeyError(key)
        from ..accelerators.devices import runner_globals

        for name, value in runner_globals(self.accelerator).items():
            self.setdefault(name, value)
        return self[key]
