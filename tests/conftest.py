"""Fixtures: the core ones, and the real services (sshd, S3, Slurm, Ray) the tests start themselves."""
pytest_plugins = ["tests.fixtures.core", "tests.fixtures.policy", "tests.services"]

import pytest


@pytest.fixture(autouse=True)
def _no_checkpoint_loaded_before(monkeypatch):
    """What a test loads with `ckpt.load` stays its own: the process's record of loaded checkpoints
    (a later save carries their labels) starts empty for every test."""
    from jupyter_split.ckpt import store

    monkeypatch.setattr(store, "LOADED", {})
