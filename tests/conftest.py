"""Fixtures: the core ones, and the real services (sshd, S3, Slurm, Ray) the tests start themselves."""
pytest_plugins = ["tests.fixtures.core", "tests.fixtures.policy", "tests.services"]

import signal

import pytest


def pytest_configure(config):
    # Tests press Ctrl-C as a user does at a terminal, where a job gets SIGINT as a fresh process has it.
    # A test run started in the background by a script (`make test &`, CI) inherits it ignored, and
    # every command a test starts would ignore Ctrl-C too: the run takes it back, once, here.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_checkpoint_loaded_before(monkeypatch):
    """What a test loads with `ckpt.load` stays its own: the process's record of loaded checkpoints
    (a later save carries their labels) starts empty for every test."""
    from jupyter_split.ckpt import store

    monkeypatch.setattr(store, "LOADED", {})
