"""The red team against the border: every way a resident file can hide in a copied tree.

Each attempt builds a source that holds a resident file under another guise (a symlink at
any depth, a hard link, a copy under a new name, a bind mount, an SFTP URL that is this
machine) and pushes it to a site abroad: a folder on this disk, a bucket on the S3 server,
a folder over the test sshd. Every attempt must be refused before the first byte: the
destination holds none of the resident bytes, and the audit log gains a `refused` line.

The resident file's content is plain text with no personal information a scanner would
know, so what refuses it here is the label following the bytes (path, identity, content
hash), not the content scan (tests/residency/residency/test_border_scan.py covers that).
"""
from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from jupyter_split import policy, sync
from jupyter_split.config import load_config
from tests.fixtures.policy import policy_config, sftp_options, toml_table

RESIDENT = b"member,score,notes\n" + b"".join(b"m%05d,%d,resident row %d\n" % (i, i * 7 % 100, i) for i in range(400))
OTHER = b"weights and logs that may go abroad\n" * 20


@pytest.fixture(scope="module")
def bucket(s3) -> str:
    name = f"sg-{uuid.uuid4().hex[:10]}"
    s3.make_bucket(name)
    return name


@pytest.fixture
def world(split_home: Path, s3, sshd, bucket) -> Path:
    """CN home; abroad (SG): a local folder (sg), a bucket on the S3 server (sgs3), a folder over SFTP (sgsftp)."""
    root = split_home
    prefix = f"runs-{uuid.uuid4().hex[:8]}"
    policy_config(root, more_sites=f"""
[sites.sgs3]
jurisdiction = "SG"
storage = "s3://{bucket}/{prefix}"
storage_options = {toml_table(s3.storage_options)}

[sites.sgsftp]
jurisdiction = "SG"
storage = "ssh://127.0.0.1:{sshd.port}{root}/sftp-store"
storage_options = {toml_table(sftp_options(sshd))}
""")
    (root / "pii" / "people.csv").write_bytes(RESIDENT)
    (root / "pii" / "more").mkdir()
    (root / "pii" / "more" / "visits.csv").write_bytes(RESIDENT[::-1])
    return root


# -- the escapes: each makes a source under `root/src` and returns what to push ---------------

def _tree(root: Path) -> Path:
    src = root / "src"
    for i in range(6):
        (src / f"logs/{i}").mkdir(parents=True, exist_ok=True)
        (src / f"logs/{i}/run.txt").write_bytes(OTHER + bytes([i]))
    return src


def symlink_in_folder(root: Path) -> str:
    src = _tree(root)
    (src / "data").mkdir()
    (src / "data" / "people.csv").symlink_to(root / "pii" / "people.csv")
    return str(src)


def symlink_deep_relative(root: Path) -> str:
    src = _tree(root)
    deep = src / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / "x.bin").symlink_to(os.path.relpath(root / "pii" / "more" / "visits.csv", deep))
    return str(src)


def symlink_to_resident_folder(root: Path) -> str:
    src = _tree(root)
    (src / "mirror").symlink_to(root / "pii")
    return str(src)


def symlink_chain(root: Path) -> str:
    src = _tree(root)
    (root / "hop").mkdir()
    (root / "hop" / "two").symlink_to(root / "pii" / "people.csv")
    (root / "hop" / "one").symlink_to(root / "hop" / "two")
    (src / "weights.bin").symlink_to(root / "hop" / "one")
    return str(src)


def source_is_a_symlinked_folder(root: Path) -> str:
    (root / "innocent").symlink_to(root / "pii" / "more")
    return str(root / "innocent")


def hard_link(root: Path) -> str:
    src = _tree(root)
    os.link(root / "pii" / "people.csv", src / "logs" / "3" / "metrics.csv")
    return str(src)


def hard_link_as_the_source(root: Path) -> str:
    os.link(root / "pii" / "people.csv", root / "export.csv")
    return str(root / "export.csv")


def copy_renamed(root: Path) -> str:
    src = _tree(root)
    shutil.copyfile(root / "pii" / "people.csv", src / "logs" / "5" / "tokenizer.json")
    return str(src)


def copy_of_a_nested_resident_file(root: Path) -> str:
    src = _tree(root)
    (src / "deep" / "er").mkdir(parents=True)
    shutil.copyfile(root / "pii" / "more" / "visits.csv", src / "deep" / "er" / "VISITS.CSV")
    return str(src)


def copy_as_the_source(root: Path) -> str:
    shutil.copyfile(root / "pii" / "people.csv", root / "model-card.md")
    return str(root / "model-card.md")


def bind_mount(root: Path) -> str:
    src = _tree(root)
    (src / "mnt").mkdir()
    subprocess.run(["mount", "--bind", str(root / "pii"), str(src / "mnt")], check=True)
    return str(src)


def zip_of_the_folder(root: Path) -> str:
    src = _tree(root)
    with zipfile.ZipFile(src / "bundle.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(root / "pii" / "people.csv", "people.csv")
        z.write(root / "pii" / "more" / "visits.csv", "more/visits.csv")
    return str(src)


def tar_gz_of_a_file(root: Path) -> str:
    src = _tree(root)
    with tarfile.open(src / "backup.tar.gz", "w:gz") as t:
        t.add(root / "pii" / "people.csv", "backup/people.csv")
    return str(src)


def gzip_of_a_file(root: Path) -> str:
    src = _tree(root)
    (src / "people.csv.gz").write_bytes(gzip.compress(RESIDENT))
    return str(src)


def zip_in_a_zip(root: Path) -> str:
    src = _tree(root)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("v.csv", RESIDENT[::-1])
    with zipfile.ZipFile(src / "outer.zip", "w") as z:
        z.writestr("inner.zip", inner.getvalue())
        z.writestr("readme.txt", OTHER)
    return str(src)


ESCAPES: list[Callable[[Path], str]] = [
    symlink_in_folder, symlink_deep_relative, symlink_to_resident_folder, symlink_chain,
    source_is_a_symlinked_folder, hard_link, hard_link_as_the_source, copy_renamed,
    copy_of_a_nested_resident_file, copy_as_the_source, bind_mount, zip_of_the_folder,
    tar_gz_of_a_file, gzip_of_a_file, zip_in_a_zip,
]
SITES = ["sg", "sgs3", "sgsftp"]


@pytest.fixture
def unmount(world: Path):
    yield
    mounted = world / "src" / "mnt"
    if os.path.ismount(mounted):
        subprocess.run(["umount", str(mounted)], check=True)


# -- what every attempt asserts ----------------------------------------------------------------

def landed(site: str, world: Path, s3, bucket: str) -> list[bytes]:
    """The contents of every file now at the site's storage (a refused copy adds none)."""
    config = load_config()
    storage = config.sites[site].storage
    if storage.startswith("s3://"):
        fs = s3.filesystem()
        prefix = storage.removeprefix("s3://")
        return [fs.cat_file(p) for p in fs.find(prefix)]
    folder = Path(storage.removeprefix("file://")) if storage.startswith("file://") else world / "sftp-store"
    return [p.read_bytes() for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def assert_refused(push: Callable[[], object], site: str, world: Path, s3, bucket: str, *, why: str = "") -> str:
    """Run `push`; it must be refused with nothing resident at `site` and one more refused audit line."""
    before = len(policy.audit_entries(decision="refused"))
    files_before = len(landed(site, world, s3, bucket))
    with pytest.raises(policy.ResidencyError) as refused:
        push()
    message = str(refused.value)
    assert why in message, message
    assert len(landed(site, world, s3, bucket)) == files_before, "a refused copy wrote to the destination"
    assert_nothing_resident(site, world, s3, bucket)
    assert len(policy.audit_entries(decision="refused")) == before + 1
    return message


def assert_nothing_resident(site: str, world: Path, s3, bucket: str) -> None:
    for data in landed(site, world, s3, bucket):
        for secret in (RESIDENT, RESIDENT[::-1]):
            assert secret[:200] not in data, f"resident bytes reached {site}"


# -- every escape, every storage, through the Python face ---------------------------------------

@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("escape", ESCAPES, ids=lambda f: f.__name__)
def test_every_escape_is_refused_on_every_storage(world, s3, bucket, unmount, escape, site):
    source = escape(world)
    message = assert_refused(lambda: sync.push(source, f"{site}:attempt", progress=False), site, world, s3, bucket)
    assert "Nothing was sent" in message and f"site {site!r}" in message


def test_a_refusal_names_the_file_the_original_and_how_it_matched(world, s3, bucket, unmount):
    symlink_in_folder(world)
    os.link(world / "pii" / "people.csv", world / "src" / "logs" / "0" / "h.csv")
    shutil.copyfile(world / "pii" / "more" / "visits.csv", world / "src" / "logs" / "1" / "c.csv")
    message = assert_refused(lambda: sync.push(str(world / "src"), "sg:x", progress=False), "sg", world, s3, bucket)
    assert f"data/people.csv (which resolves to {world}/pii/people.csv)" in message
    assert f"logs/0/h.csv is the resident file {world}/pii/people.csv itself" in message
    assert f"logs/1/c.csv has the same content (sha256) as the resident file {world}/pii/more/visits.csv" in message
    [entry] = policy.audit_entries(decision="refused")
    assert entry["labels"] == ["CN"] and entry["to_site"] == "sg"


def test_a_clean_tree_still_goes_abroad(world, s3, bucket):
    src = _tree(world)
    (src / "link-to-log").symlink_to(src / "logs" / "0" / "run.txt")
    (src / "weights.bin").write_bytes(os.urandom(len(RESIDENT)))  # a resident file's size, not its content
    for site in SITES:
        report = sync.push(str(src), f"{site}:clean", progress=False)
        assert report.files_sent == 8
    assert [e["decision"] for e in policy.audit_entries()].count("refused") == 0


def test_an_ssh_url_that_is_this_machine_is_judged_as_local_files(world, s3, bucket, sshd):
    hard_link(world)
    for path in (world / "pii", world / "src"):
        url = f"ssh://localhost:{sshd.port}{path}"
        options = sftp_options(sshd)
        for site in ("sg", "sgs3"):
            dest = load_config().sites[site].storage + "/via-ssh"
            opts = s3.storage_options if site == "sgs3" else None
            assert_refused(lambda: sync.copy(url, dest, src_options=options, dest_options=opts, progress=False),
                           site, world, s3, bucket)


def _swap_in_a_hard_link(victim: Path, world: Path) -> None:
    victim.unlink()
    os.link(world / "pii" / "people.csv", victim)  # a resident file where a clean one was judged


def _write_resident_bytes(victim: Path, world: Path) -> None:
    victim.write_bytes(RESIDENT[: victim.stat().st_size])  # same size, new content


def race_after_the_check(monkeypatch, race: Callable[[], None]) -> None:
    """Run `race` right after the guard has judged the copy and before its first read."""
    checked = policy.check_copy

    def check_then_race(*args, **kwargs):
        carried = checked(*args, **kwargs)
        race()
        return carried

    monkeypatch.setattr(policy, "check_copy", check_then_race)


@pytest.mark.parametrize("site", ["sg", "sgs3", "sgsftp"])
@pytest.mark.parametrize("race", [_swap_in_a_hard_link, _write_resident_bytes], ids=lambda f: f.__name__.strip("_"))
def test_a_large_file_changed_between_the_check_and_the_read_is_not_sent(world, s3, bucket, monkeypatch, race, site):
    src = _tree(world)
    victim = src / "logs" / "2" / "run.bin"
    victim.write_bytes(os.urandom(1 << 20))  # past what the scan keeps: the copy reads it again, under its pin
    race_after_the_check(monkeypatch, lambda: race(victim, world))
    with pytest.raises(Exception, match="changed after the residency guard checked it"):
        sync.push(str(src), f"{site}:race", progress=False, retries=0)
    assert_nothing_resident(site, world, s3, bucket)


@pytest.mark.parametrize("race", [_swap_in_a_hard_link, _write_resident_bytes], ids=lambda f: f.__name__.strip("_"))
def test_a_small_file_changed_after_the_check_is_sent_as_it_was_judged(world, s3, bucket, monkeypatch, race):
    src = _tree(world)
    victim = src / "logs" / "2" / "run.txt"
    judged = victim.read_bytes()
    race_after_the_check(monkeypatch, lambda: race(victim, world))
    sync.push(str(src), "sg:race", progress=False, retries=0)
    assert (world / "sg-store" / "race" / "logs" / "2" / "run.txt").read_bytes() == judged
    assert_nothing_resident("sg", world, s3, bucket)


# -- the other faces ----------------------------------------------------------------------------

def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_split.cli", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("escape", [symlink_in_folder, hard_link, copy_renamed, bind_mount, zip_of_the_folder],
                         ids=lambda f: f.__name__)
def test_the_cli_push_refuses_every_escape(world, s3, bucket, unmount, escape):
    source = escape(world)
    before = len(policy.audit_entries(decision="refused"))
    done = cli("push", source, "sgsftp:cli", cwd=world / "work")
    assert done.returncode != 0 and "Residency" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert_nothing_resident("sgsftp", world, s3, bucket)
    assert len(policy.audit_entries(decision="refused")) == before + 1


@pytest.mark.slow
def test_split_push_in_a_notebook_refuses_a_hard_link_and_a_copy(world, s3, bucket, kernel):
    hard_link(world)
    outputs, reply = kernel.run(f"%split push {world}/src sgs3:nb")
    shown = json.dumps(outputs) + json.dumps(reply)
    assert reply["status"] == "error" and "Residency" in shown and "same device and inode" in shown, shown
    os.unlink(world / "src" / "logs" / "3" / "metrics.csv")
    shutil.copyfile(world / "pii" / "people.csv", world / "src" / "logs" / "5" / "tokenizer.json")
    outputs, reply = kernel.run(f"%split push {world}/src sg:nb")
    shown = json.dumps(outputs) + json.dumps(reply)
    assert reply["status"] == "error" and "Residency" in shown and "same content" in shown, shown
    assert_nothing_resident("sgs3", world, s3, bucket)
    assert_nothing_resident("sg", world, s3, bucket)
    assert len(policy.audit_entries(decision="refused")) == 2
