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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import fsspec
import pytest
import torch

from jupyter_split import ckpt, core, sync
from jupyter_split.ckpt import store as ckpt_store
from jupyter_split.config import SiteConfig
from jupyter_split.ssh.connection import HostKeyError, SiteConnection
from tests.fixtures.policy import policy_config, sftp_options
from tests.services.sshd import fingerprint_of, keygen, running_sshd


@pytest.fixture(autouse=True)
def _isolated(split_home, monkeypatch):
    """Own data dir, config and HOME (so ~/.ssh/known_hosts is this test's); no lineage from other tests."""
    monkeypatch.setattr(ckpt_store, "LOADED", {})
    return split_home


def _url(sshd, path) -> str:
    return f"ssh://127.0.0.1:{sshd.port}{path}"


def _options(sshd, known_hosts) -> dict:
    options = {k: v for k, v in sftp_options(sshd).items() if k != "known_hosts"}
    if known_hosts is not ...:
        options["known_hosts"] = known_hosts
    return options


def _site_login(sshd, known_hosts: Path) -> None:
    """Log in as a site's runs do (sshlogin), with the known_hosts file `known_hosts`."""
    async def login() -> None:
        conn = SiteConnection(SiteConfig(name="sg", **sshd.site(known_hosts=str(known_hosts))))
        await conn.connection()
        await conn.close()
    asyncio.run(login())


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
    with pytest.raises(HostKeyError) as err:  # a site's login says the same, with the fingerprint
        _site_login(sshd, tmp_path / "nope")
    assert "does not exist" in str(err.value) and sshd.fingerprint in str(err.value)

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
    # the `[host]:port` entry is honoured, hashed (`ssh-keyscan -H`, `HashKnownHosts`) or not
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")
    fs = fsspec.filesystem("ssh", host="127.0.0.1", port=sshd.port, **_options(sshd, str(known)))
    assert fs.exists(str(tmp_path)) and _site_login(sshd, known) is None


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


# --- full, read-only and forbidden storage --------------------------------------------------

@contextlib.contextmanager
def _tmpfs(path: Path, size: str = "2m", readonly: bool = False) -> Iterator[Path | None]:
    """A real filesystem of `size` at `path` (a tmpfs), or None where this process may not mount one (not root)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (",ro" if readonly else "")
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                                   capture_output=True).returncode == 0
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)


def _three_shards() -> dict:
    """About 2.8 MB in three shards of 0.9 MB (max_shard_size=_SHARD): two fit a 2 MiB disk, the third does not."""
    return {name: torch.full((230_000,), float(i)) for i, name in enumerate("abc")}


_SHARD = "1MB"


def _left(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_ckpt_save_on_a_full_disk_names_the_file_and_fix_and_leaves_nothing(tmp_path):
    """A real full disk: a 2 MiB tmpfs (the test is skipped where it may not mount one, i.e. not as root)."""
    with _tmpfs(tmp_path / "disk") as disk:
        if disk is None:
            pytest.skip("mounting a tmpfs needs root; test_ckpt_save_past_the_file_size_limit covers the rest")
        with pytest.raises(ckpt.CheckpointWriteError) as err:
            ckpt.save(_three_shards(), str(disk / "ck"), max_shard_size=_SHARD)
        assert err.value.errno == 28 and isinstance(err.value, OSError)
        message = str(err.value)
        assert f"ckpt.save {disk}/ck/model-0000" in message and "No space left on device" in message
        assert "Free space on that disk or save to another storage" in message and "Nothing of this save" in message
        assert _left(disk / "ck") == []  # no partial shard, no temp file, no finished shard of the failed save
        ckpt.save({"w": torch.ones(4)}, str(disk / "ck"))  # and the same place takes a save that fits
        assert torch.equal(ckpt.load(str(disk / "ck"), device="cpu")["w"], torch.ones(4))


def test_ckpt_save_past_the_file_size_limit_leaves_nothing(tmp_path):
    """Not a full disk: a child process whose file size limit (RLIMIT_FSIZE) is 1 MiB, so the
    third write of a shard fails with EFBIG as a full disk fails with ENOSPC, on any machine."""
    code = (
        "import resource, signal, sys, torch\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"  # a write past the limit fails, not kills
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        "from jupyter_split import ckpt\n"
        "try:\n"
        "    ckpt.save({'a': torch.zeros(300_000)}, sys.argv[1])\n"
        "except ckpt.CheckpointWriteError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ck")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert f"ckpt.save {tmp_path}/ck/model-00001-of-00001.safetensors" in done.stdout
    assert "File too large" in done.stdout and "ulimit -f" in done.stdout and "max_shard_size" in done.stdout
    assert _left(tmp_path / "ck") == []


def test_sftp_full_disk_says_no_space_on_which_file_of_which_server(sshd, tmp_path):
    """A real full disk on the SFTP server: a 2 MiB tmpfs it writes to (skipped where the test may not mount one)."""
    with _tmpfs(tmp_path / "disk") as disk:
        if disk is None:
            pytest.skip("mounting a tmpfs for the test sshd needs root")
        with pytest.raises(ckpt.CheckpointWriteError) as err:
            ckpt.save(_three_shards(), _url(sshd, disk / "ck"), max_shard_size=_SHARD, storage_options=sftp_options(sshd))
        message = str(err.value)
        assert err.value.errno == 28 and f"ckpt.save {_url(sshd, disk / 'ck')}/model-0000" in message
        assert f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{disk}/ck/" in message
        assert "no space left on the server's filesystem" in message and "Free space there" in message
        assert "SFTP status 4" not in message
        assert _left(disk / "ck") == []

        src = tmp_path / "src"
        src.mkdir()
        (src / "big.bin").write_bytes(os.urandom(3 << 20))
        with pytest.raises(sync.SyncError) as err:
            sync.copy(str(src), _url(sshd, disk / "sy"), dest_options=sftp_options(sshd), progress=False, retries=0)
        message = str(err.value)
        assert f"write ssh://{sshd.user}@127.0.0.1:{sshd.port}{disk}/sy/" in message
        assert "no space left on the server's filesystem" in message and "SFTP status" not in message


def test_sftp_read_only_disk_is_said_read_only(sshd, tmp_path):
    with _tmpfs(tmp_path / "ro", readonly=True) as disk:
        if disk is None:
            pytest.skip("mounting a tmpfs for the test sshd needs root")
        with pytest.raises(ckpt.CheckpointWriteError) as err:
            ckpt.save({"w": torch.ones(4)}, _url(sshd, disk / "ck"), storage_options=sftp_options(sshd))
        message = str(err.value)
        assert f"{disk}/ck" in message and "read-only" in message and "Choose a writable folder" in message


def test_sftp_permission_denied_and_missing_files_name_the_user_path_and_server(sshd, tmp_path):
    """A server of its own, in a folder `nobody` may read (sshd reads authorized_keys as the user),
    lets the test's client key in as `nobody`, who may not enter this test's root-only folder."""
    if os.geteuid() != 0:
        pytest.skip("logging in as another user (nobody) needs the test sshd to run as root")
    pwd = pytest.importorskip("pwd")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this machine has no user `nobody`")
    os.chmod(tmp_path, 0o700)
    readable = Path(tempfile.mkdtemp(prefix="js-nobody-"))
    try:
        os.chmod(readable, 0o755)
        with running_sshd(readable / "sshd") as server:
            options = {**sftp_options(server), "username": "nobody"}
            with pytest.raises(PermissionError) as err:
                ckpt.save({"w": torch.ones(4)}, _url(server, tmp_path / "ck"), storage_options=options)
            message = str(err.value)
            assert f"ssh://nobody@127.0.0.1:{server.port}{tmp_path}" in message and "Let nobody write there" in message
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    fs = fsspec.filesystem("ssh", host="127.0.0.1", port=sshd.port, **sftp_options(sshd))
    with pytest.raises(FileNotFoundError) as err:
        fs.cat_file(str(tmp_path / "missing.bin"))
    assert f"read ssh://{sshd.user}@127.0.0.1:{sshd.port}{tmp_path}/missing.bin: no such file" in str(err.value)


def test_an_unwritable_audit_log_stops_the_transfer_and_says_which_log(_isolated, tmp_path):
    log = tmp_path / "audit.jsonl"
    log.mkdir()  # unwritable as a file even for root, who may write anything else
    config = policy_config(_isolated) / "jupyter_split.toml"
    config.write_text(config.read_text() + f'audit_log = "{log}"\n')  # [policy] is its last table
    core.reset()
    with pytest.raises(OSError) as err:
        ckpt.save({"w": torch.ones(4)}, "sg:ck")  # abroad: the guard records its decision
    message = str(err.value)
    assert f"the residency audit log {log} cannot be written" in message and "was stopped" in message
    assert "point `audit_log` under [policy] at a writable file" in message
    assert not (_isolated / "sg-store" / "ck").exists()  # fails closed


# --- ckpt.load on every storage -------------------------------------------------------------

@pytest.mark.parametrize("storage", ["file", "ssh", "s3"])
def test_ckpt_load_reads_ssh_s3_and_file_storage_alike(storage, request, tmp_path):
    state = {**_three_shards(), "ids": torch.arange(16, dtype=torch.int64), "step": 3}
    if storage == "file":
        url, options = str(tmp_path / "ck"), {}
    elif storage == "ssh":
        sshd = request.getfixturevalue("sshd")
        url, options = _url(sshd, tmp_path / "ck"), sftp_options(sshd)
    else:
        s3 = request.getfixturevalue("s3")
        url, options = f"{s3.make_bucket('doors-load')}/{tmp_path.name}/ck", s3.storage_options
    ckpt.save(state, url, max_shard_size=_SHARD, storage_options=options)
    for verify in ("auto", "always"):
        out = ckpt.load(url, device="cpu", verify=verify, storage_options=options)
        assert out["step"] == 3 and torch.equal(out["b"], state["b"])
        assert all(torch.equal(out[k], state[k]) for k in "abc")
    lazy = ckpt.load(url, device="cpu", lazy=True, storage_options=options)
    assert torch.equal(lazy["c"], state["c"]) and len(list(lazy.iter_shards())) == 3
