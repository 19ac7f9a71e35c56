"""Bad input gets a clear error naming the thing and the fix, and loses nothing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_split.config import ConfigError, load_config
from tests.fixtures.core import text, tracebacks, write_config

GOOD_SITE = '[sites.home]\nexecutor = "local"\njurisdiction = "CN"\n'


def test_default_config_has_two_local_sites(split_home):
    config = load_config()
    assert config.source == "built-in default"
    assert {n: (s.executor, s.jurisdiction) for n, s in config.sites.items()} == {"abroad": ("local", "SG"), "home": ("local", "CN")}
    assert config.experiment.default_remote == "abroad" and config.home.name == "home"


def test_config_lookup_order(split_home, monkeypatch):
    parent = write_config(split_home, GOOD_SITE + '[experiment]\nname = "from-cwd"\ndefault_remote = "home"\n')
    (split_home / "work" / "deeper").mkdir()
    monkeypatch.chdir(split_home / "work" / "deeper")
    assert load_config().experiment.name == "from-cwd" and load_config().source == str(parent)
    explicit = split_home / "explicit.toml"
    explicit.write_text(GOOD_SITE + '[experiment]\nname = "explicit"\ndefault_remote = "home"\n')
    monkeypatch.setenv("JUPYTER_SPLIT_CONFIG", str(explicit))
    assert load_config().experiment.name == "explicit"


def test_malformed_toml_names_the_file_and_line(split_home):
    path = write_config(split_home, "[sites.home\njurisdiction = 'CN'\n")
    with pytest.raises(ConfigError) as err:
        load_config()
    assert str(path) in str(err.value) and "line 1" in str(err.value) and "not valid TOML" in str(err.value)


def test_unknown_key_is_an_error_naming_the_key(split_home):
    path = write_config(split_home, GOOD_SITE + 'hots = "typo"\n[experiment]\ndefault_remote = "home"\n')
    with pytest.raises(ConfigError) as err:
        load_config()
    message = str(err.value)
    assert str(path) in message and "sites.home.hots" in message and "unknown key" in message


def test_bad_values_name_key_and_fix(split_home):
    write_config(split_home, '[sites.sg]\nexecutor = "ssh"\njurisdiction = "Singapore"\n'
                             '[experiment]\nhome = "sg"\ndefault_remote = "sg"\n')
    with pytest.raises(ConfigError) as err:
        load_config()
    message = str(err.value)
    assert "sites.sg.jurisdiction" in message and "ISO 3166" in message
    write_config(split_home, GOOD_SITE + '[experiment]\ndefault_remote = "nowhere"\n')
    with pytest.raises(ConfigError, match="experiment.default_remote = 'nowhere' names no site"):
        load_config()


@pytest.mark.slow
def test_unknown_site_in_a_cell_lists_the_known_ones(kernel):
    outputs, reply = kernel.run("%%on moon\nprint('never')")
    assert reply["status"] == "error"
    assert "unknown site 'moon'" in text(outputs, "stderr") + str(reply)
    assert "abroad, home" in text(outputs, "stderr") + str(reply)


@pytest.mark.slow
def test_unpicklable_variable_is_named_and_nothing_runs(kernel):
    outputs, reply = kernel.run("import threading\nlock = threading.Lock()\nn = 1")
    outputs, reply = kernel.run("%%on home --in n,lock\nprint('ran')")
    assert reply["status"] == "error"
    message = text(outputs, "stderr") + str(reply)
    assert "'lock'" in message and "cannot be pickled" in message
    assert "ran" not in text(outputs, "stdout")


@pytest.mark.slow
def test_unpicklable_out_variable_is_named(kernel):
    outputs, reply = kernel.run("%%on home --out gen\ngen = (i for i in range(3))")
    assert reply["status"] == "error"
    assert "'gen'" in tracebacks(outputs) and "cannot be pickled" in tracebacks(outputs)


@pytest.mark.slow
def test_missing_in_variable_is_named(kernel):
    outputs, reply = kernel.run("%%on home --in nothere\npass")
    assert reply["status"] == "error"
    assert "'nothere' is not defined" in text(outputs, "stderr") + str(reply)


@pytest.mark.slow
def test_version_mismatch_is_refused_naming_both_sides(kernel, split_home):
    # The site's interpreter is real; what it imports as cloudpickle reports another version.
    fake = split_home / "oldlibs" / "cloudpickle-0.9.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: cloudpickle\nVersion: 0.9\n")
    write_config(split_home, GOOD_SITE + f'env = {{ PYTHONPATH = "{fake.parent}" }}\n[experiment]\ndefault_remote = "home"\n')
    kernel.ok("%load_ext jupyter_split\nimport jupyter_split.core as c\nc.reset()\nv = 1")
    outputs, reply = kernel.run("%%on home --in v\nprint('ran')")
    assert reply["status"] == "error"
    message = text(outputs, "stderr") + str(reply)
    assert "cloudpickle" in message and "0.9 on home" in message and "here vs" in message
    assert "ran" not in text(outputs, "stdout")


def test_cli_exit_codes(split_home, tmp_path):
    script = tmp_path / "ok.py"
    script.write_text("print('hello from the site')\n")
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('nope')\n")
    cli = [str(Path(sys.executable).with_name("jupyter-split"))]
    done = subprocess.run(cli + ["run", "home", str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "hello from the site\n"
    done = subprocess.run(cli + ["run", "home", str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "RuntimeError" in done.stderr and "nope" in done.stderr
    done = subprocess.run(cli + ["run", "moon", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown site 'moon'" in done.stderr
    done = subprocess.run(cli + ["attach", "no-such-run"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no run 'no-such-run'" in done.stderr
    done = subprocess.run(cli + ["runs"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.count("split-demo-home") == 2
    done = subprocess.run(["jupyter", "split", "sites"], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}"})
    assert done.returncode == 0 and "abroad" in done.stdout and "home" in done.stdout
