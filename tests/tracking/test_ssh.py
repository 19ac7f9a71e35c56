"""W&B over an ssh site (a real sshd on 127.0.0.1): the key travels over the runner's stdin
only, and the site's W&B runs are read back over SFTP with no network to W&B."""
from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import psutil
import pytest

from jupyter_split import core
from jupyter_split.tracking import sites as wandb_sites
from tests.fixtures.core import text, write_config

pytestmark = pytest.mark.slow

API_KEY = "wbk-" + secrets.token_hex(20)


def _table(values: dict) -> str:
    return "\n".join(f"{k} = {json.dumps(v) if not isinstance(v, dict) else '{ ' + ', '.join(f'{a} = {json.dumps(b)}' for a, b in v.items()) + ' }'}"
                     for k, v in values.items())


@pytest.fixture
def ssh_experiment(split_home, sshd, monkeypatch):
    site = sshd.site(wandb={"mode": "online"})     # online: the only case a key is sent at all
    write_config(split_home, '[experiment]\nname = "llm-split"\nhome = "home"\ndefault_remote = "sg"\n'
                 '[sites.home]\njurisdiction = "CN"\n[sites.sg]\n' + _table(site) + "\n")
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)    # the notebook's key, as `wandb login` users have it
    return sshd


def test_key_over_stdin_only_and_runs_read_over_sftp(ssh_experiment, kernel, split_home):
    shown = text(kernel.ok("%%on sg --name keycheck\nimport hashlib, os\n"
                           "print(hashlib.sha256(os.environ.get('WANDB_API_KEY', '').encode()).hexdigest())"))
    # sshd passed no environment: the key came over the runner's stdin (a first cell may also say
    # that jupyter_split is being installed on the site)
    assert shown.strip().splitlines()[-1] == hashlib.sha256(API_KEY.encode()).hexdigest()
    kernel.ok("%%on sg --name pretrain\nimport wandb\nrun = wandb.init(mode='offline')\n"
              "run.log({'loss': 0.5})\nrun.finish()")

    [item] = wandb_sites.experiment_runs(core.get_split())
    assert item.site == "sg" and item.run.job_type == "pretrain" and item.run.group == "llm-split"
    assert item.run.tags == ["site:sg", "jurisdiction:SG", "accelerator:cpu"]
    assert item.run.metrics() == {"loss": 0.5} and item.run.state == "finished"
    assert item.run.path.is_relative_to(ssh_experiment.workdir)         # read where it lies, over SFTP

    needle = API_KEY.encode()
    files = [p for root in (Path(ssh_experiment.workdir), split_home) for p in root.rglob("*")
             if p.is_file() and not p.is_symlink()]
    assert len(files) > 20 and not [p for p in files if needle in p.read_bytes()]
    assert API_KEY not in ssh_experiment.log_text()
    for process in psutil.process_iter(["cmdline"]):
        assert API_KEY not in " ".join(process.info["cmdline"] or ()), process
