"""A short command costs its own work, not every verb's imports and the config's models (issue:
`jupyter-split logs RUN --tail 100` took 0.46 s, nearly all of it start-up)."""
from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

from jupyter_split import commands
from jupyter_split.core import CellOptions, get_split
from jupyter_split.executors.files import ON_THIS_MACHINE
from tests.fixtures.core import write_config

PROBE = """
import sys
from jupyter_split import cli
status = cli.main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m in ("pydantic", "fsspec", "jupyter_split.config", "jupyter_split.core.split"))
print("loaded:", ",".join(loaded), "status:", status)
"""


def test_every_verb_is_mapped_to_the_module_that_registers_it():
    for module in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"jupyter_split.commands.{module.name}")
    assert set(commands.VERB_MODULES) == set(commands.VERBS)
    for name, verb in commands.VERBS.items():
        assert verb.func.__module__ == f"jupyter_split.commands.{commands.VERB_MODULES[name]}", name


def _cli(*argv: str) -> tuple[list[str], str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=os.environ, timeout=120)
    lines = done.stdout.splitlines()
    return lines[:-1], lines[-1] + done.stderr


def test_logs_of_a_local_run_load_no_config_and_survive_a_broken_one(split_home):
    split = get_split()
    outcome = split.execute("for i in range(5):\n    print(f'line {i}')", CellOptions(site="home"), {}, lambda event: None)
    assert outcome.state == "succeeded", outcome
    assert split.index.get(outcome.run_id).handle[ON_THIS_MACHINE] is True

    shown, last = _cli("logs", outcome.run_id, "--tail", "2")  # the last 2 lines, however the records hold them
    assert shown == ["line 4", "[succeeded]"]
    assert last == "loaded:  status: 0", "the tail of a local run imports neither the config nor the Split"
    shown, last = _cli("logs", outcome.run_id)
    assert [line for line in shown if line.startswith("line ")] == [f"line {i}" for i in range(5)]
    assert shown[-1] == "[succeeded]" and last == "loaded:  status: 0"

    # the log stays where it was written whatever the config says now: a broken config does not hide it
    write_config(split_home, "[sites.home\n")
    shown, last = _cli("logs", outcome.run_id, "--tail", "1")
    assert shown == ["[succeeded]"] and last == "loaded:  status: 0"
    # a command that needs the config still says what is wrong with it
    shown, last = _cli("runs")
    assert "status: 2" in last and "jupyter_split.toml" in last, last


def test_a_verb_with_a_typo_still_lists_every_verb():
    shown, last = _cli("logz")
    assert "unknown verb 'logz'" in last and "Did you mean 'logs'?" in last
    for name in commands.VERB_MODULES:
        assert name in last


FROZEN = """
import gc, sys
from jupyter_split import cli
way, sys.argv = sys.argv[1], ["jupyter-split", *sys.argv[2:]]
status = cli.main() if way == "command" else cli.main(sys.argv[1:])
print("frozen:", gc.get_freeze_count() > 0, "status:", status)
"""


def test_the_command_leaves_its_imports_out_of_the_collections_at_exit_and_a_library_call_does_not():
    # the interpreter's last collections walked every object the imports made: 0.1 s of a no-op `push`
    for way, frozen in (("command", True), ("call", False)):
        done = subprocess.run([sys.executable, "-c", FROZEN, way, "agent", "status"], capture_output=True, text=True,
                              env={**os.environ, "JUPYTER_SPLIT_AGENT": "off"}, timeout=120)
        assert done.stdout.strip().splitlines()[-1] == f"frozen: {frozen} status: 1", done.stdout + done.stderr
