"""The storage and checkpoint doors of the border, tried against the real test sshd and moto_server.

Host keys: `ssh://` storage (and a site's login, which shares the one explanation) always
checks the server's key as OpenSSH does. SFTP and disk failures say what failed, where
and what to do. `ckpt.save` never leaves a partial shard behind a failure, and `ckpt.load`
reads `ssh://`, `s3://` and `file://` storage alike.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import fsspec
import pytest
import torch

from jupyter_split import ckpt, sync
from jupyter_split.config import SiteConfig
from jupyter_split.sshconn import HostKeyError, SiteConnection
from tests.fixtures.policy import sftp_options
from tests.services.sshd import fingerprint_of, keygen


@pytest.fixture(autouse=True)
def _isolated(split_home, monkeypatch):
    """Own data dir, config and HOME (so ~/.ssh/known_hosts is this test's); no lineage from other tests."""
    monkeypatch.setattr(ckpt, "_LOADED", {})
    return split_home


def _url(sshd, path) -> str:
    return f"ssh://127.0.0.1:{sshd.port}{path}"


def _options(sshd, known_hosts) -> dict:
    options = {k: v for k, v in sftp_options(sshd).items() if k != "known_hosts"}
    if known_hosts is not ...:
        options["known_hosts"] = known_hosts
    return options


def _site_login(sshd, known_hosts: Path) -> None:
    site = SiteConfig(name="sg", **sshd.site(known_hosts=str(known_hosts)))
    asyncio.run(SiteConnection(site).connection())


def _refusals(sshd, known: Path) -> Iterator[str]:
    """The refusal at each SSH door (storage through fsspec, a site's login) with the known_hosts file `known`."""
    for door in (lambda: fsspec.filesystem("ssh", host="127.0.0.1", port=sshd.port, **_options(sshd, str(known))),
                 lambda: _site_login(sshd, known)):
        with pytest.raises(HostKeyError) as err:
            door()
        yield str(err.value)


def _state() -> dict:
    torch.manual_seed(0)
    return {"w": torch.randn(64, 32), "b": torch.arange(16, dtype=torch.int64), "step": 3}


# --- host keys ------------------------------------------------------------------------------

def test_ssh_storage_without_known_hosts_checks_the_home_file_and_refuses_when_it_is_missing(sshd, _isolated, tmp_path):
    dest = tmp_path / "never"
    default = Path(os.environ["HOME"]) / ".ssh" / "known_hosts"
    with pytest.raises(HostKeyError) as err:
        ckpt.save(_state(), _url(sshd, dest / "ck"), storage_options=_options(sshd, ...))
    message = str(err.value)
    assert f"known_hosts file {default} does not exist" in message and sshd.fingerprint in message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {default}" in message
    assert not dest.exists()  # refused before logging in: nothing written
    with pytest.raises(HostKeyError, match="does not exist"):
        sync.copy(str(tmp_path), _url(sshd, dest), dest_options=_options(sshd, ...), progress=False)
    with pytest.raises(HostKeyError, match="does not exist"):  # any fsspec use of the URL, not only ours
        fsspec.filesystem("ssh", host="127.0.0.1", **_options(sshd, ...), port=sshd.port)
    assert not dest.exists()

    default.parent.mkdir()
    default.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n")
    ckpt.save(_state(), _url(sshd, dest / "ck"), storage_options=_options(sshd, ...))
    assert (dest / "ck" / "manifest.json").is_file()


def test_known_hosts_none_would_turn_the_check_off_and_is_refused(sshd, tmp_path):
    with pytest.raises(HostKeyError, match="known_hosts=None would turn host key checking off"):
        sync.copy(str(tmp_path), _url(sshd, tmp_path / "x"), dest_options=_options(sshd, None), progress=False)


def test_a_plain_host_entry_does_not_vouch_for_another_port_at_either_door(sshd, tmp_path):
    # the right key, but recorded for 127.0.0.1 on port 22: OpenSSH asks for [127.0.0.1]:PORT
    known = tmp_path / "known_hosts"
    known.write_text(f"127.0.0.1 {sshd.host_public_key}\n")
    for message in _refusals(sshd, known):
        assert f"host key of [127.0.0.1]:{sshd.port} is unknown" in message and sshd.fingerprint in message
        assert "on port 22 only" in message and f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known}" in message


def test_a_revoked_key_is_said_revoked_not_changed_at_either_door(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    entry = f"[127.0.0.1]:{sshd.port}"
    known.write_text(f"{entry} {sshd.host_public_key}\n@revoked {entry} {sshd.host_public_key}\n")
    for message in _refusals(sshd, known):
        assert "marked @revoked" in message and sshd.fingerprint in message and "CHANGED" not in message


def test_a_changed_key_on_ssh_storage_shows_both_fingerprints_and_the_fix(sshd, tmp_path):
    keygen(tmp_path / "impostor", "impostor")
    known = tmp_path / "known_hosts"
    entry = f"[127.0.0.1]:{sshd.port}"
    known.write_text(f"{entry} {' '.join((tmp_path / 'impostor.pub').read_text().split()[:2])}\n")
    with pytest.raises(HostKeyError) as err:
        ckpt.load(_url(sshd, tmp_path / "ck"), storage_options=_options(sshd, str(known)))
    message = str(err.value)
    assert f"host key of {entry} CHANGED" in message and sshd.fingerprint in message
    assert fingerprint_of(tmp_path / "impostor.pub") in message
    assert f"ssh-keygen -R '{entry}' -f {known}" in message
