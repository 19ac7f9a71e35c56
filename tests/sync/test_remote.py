"""sync over real remote backends: S3 (moto_server), two S3 endpoints, S3 to SFTP (SFTP alone: test_sftp.py)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jupyter_split import policy, sync
from jupyter_split.config import parse_config
from jupyter_split.sync import engine
from jupyter_split.sync.manifest import STAGING_NAME, read_manifest

from tests.fixtures.policy import sftp_options
from tests.sync.test_local import flip_byte, make_tree, tree_hashes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("split_home")]

FILES = {"w/shard-0.bin": 2 << 20, "w/shard-1.bin": 2 << 20, "config.json": 300}


def sftp_url(sshd, path: Path) -> str:
    return f"ssh://127.0.0.1:{sshd.port}{path}"


def s3_hashes(fs, root: str) -> dict[str, str]:
    return {p[len(root) + 1:]: hashlib.sha256(fs.cat_file(p)).hexdigest()
            for p in fs.find(root) if not p.endswith("manifest.json")}


def test_local_to_s3_incremental_and_repair(tmp_path, s3):
    src = tmp_path / "src"
    hashes = make_tree(src, FILES)
    bucket = s3.make_bucket("sync-local")
    fs = s3.filesystem()
    report = sync.copy(str(src), f"{bucket}/ck", dest_options=s3.storage_options, progress=False)
    assert report.files_sent == len(FILES) and s3_hashes(fs, "sync-local/ck") == hashes
    assert not fs.exists(f"sync-local/ck/{STAGING_NAME}")

    flip_byte(src / "w/shard-1.bin")
    report = sync.copy(str(src), f"{bucket}/ck", dest_options=s3.storage_options, progress=False)
    assert (report.files_sent, report.files_skipped) == (1, 2)
    assert s3_hashes(fs, "sync-local/ck") == tree_hashes(src)

    data = bytearray(fs.cat_file("sync-local/ck/w/shard-0.bin"))
    data[7] ^= 1
    fs.pipe_file("sync-local/ck/w/shard-0.bin", bytes(data))
    assert sync.copy(str(src), f"{bucket}/ck", dest_options=s3.storage_options, progress=False).files_sent == 0
    report = sync.copy(str(src), f"{bucket}/ck", dest_options=s3.storage_options, deep=True, progress=False)
    assert report.files_sent == 1 and s3_hashes(fs, "sync-local/ck") == tree_hashes(src)


def test_interrupted_object_store_copy_keeps_finished_objects(tmp_path, s3):
    src = tmp_path / "src"
    make_tree(src, FILES)
    s3.make_bucket("sync-resume")
    fs = s3.filesystem()
    # what a killed first run leaves on an object store: whole objects at their final keys, no manifest
    fs.put_file(str(src / "w/shard-0.bin"), "sync-resume/ck/w/shard-0.bin")
    fs.pipe_file("sync-resume/ck/w/shard-1.bin", b"\0" * FILES["w/shard-1.bin"])  # right size, wrong bytes
    report = sync.copy(str(src), "s3://sync-resume/ck", dest_options=s3.storage_options, progress=False)
    assert (report.files_kept, report.files_sent) == (1, 2)
    assert s3_hashes(fs, "sync-resume/ck") == tree_hashes(src)


def two_sites(s3, s3_second, tmp_path: Path, second_jurisdiction: str):
    return parse_config({
        "experiment": {"home": "home", "default_remote": "sg"},
        "sites": {
            "sg": {"jurisdiction": "SG", "storage": "s3://border-a", "storage_options": s3.storage_options},
            "far": {"jurisdiction": second_jurisdiction, "storage": "s3://border-b", "storage_options": s3_second.storage_options},
            "home": {"jurisdiction": "CN", "storage": (tmp_path / "home").as_uri()},
        },
        "policy": {"audit_log": str(tmp_path / "audit.jsonl")},
    }, "test")


def test_two_s3_endpoints_with_their_own_credentials(tmp_path, s3, s3_second):
    assert (s3.key, s3.endpoint_url) != (s3_second.key, s3_second.endpoint_url)
    config = two_sites(s3, s3_second, tmp_path, "SG")
    make_tree(tmp_path / "src", FILES)
    s3.make_bucket("border-a")
    s3_second.make_bucket("border-b")
    sync.copy(str(tmp_path / "src"), "s3://border-a/ck", dest_options=s3.storage_options, labels=["SG"],
              config=config, progress=False)
    report = sync.copy("s3://border-a/ck", "s3://border-b/ck", s3.storage_options, s3_second.storage_options,
                       config=config, progress=False)
    assert report.files_sent == len(FILES)
    second = s3_second.filesystem()
    assert s3_hashes(second, "border-b/ck") == tree_hashes(tmp_path / "src")
    assert sync.read_manifest(second, "border-b/ck").labels == ["SG"]
    assert not s3.filesystem().exists("border-b")  # each side went to its own server


def test_residency_refusal_comes_before_the_first_byte(tmp_path, s3, s3_second):
    config = two_sites(s3, s3_second, tmp_path, "MY")
    make_tree(tmp_path / "src", FILES)
    s3.make_bucket("border-a")
    s3_second.make_bucket("border-b")
    sync.copy(str(tmp_path / "src"), "s3://border-a/sg-only", dest_options=s3.storage_options, labels=["SG"],
              config=config, progress=False)
    with pytest.raises(policy.ResidencyError, match="SG data must stay in SG"):
        sync.push("sg:sg-only", "far:sg-only", config=config, progress=False)
    assert not s3_second.filesystem().find("border-b/sg-only")  # not one byte, not even staging
    refused = policy.audit_entries(decision="refused", config=config)
    assert refused and refused[-1]["bytes"] == sum(FILES.values())


def test_s3_to_sftp_streams_between_two_remote_backends(tmp_path, s3, sshd):
    make_tree(tmp_path / "src", FILES)
    s3.make_bucket("to-sftp")
    sync.copy(str(tmp_path / "src"), "s3://to-sftp/ck", dest_options=s3.storage_options, progress=False)
    dest = tmp_path / "landed"
    report = sync.copy("s3://to-sftp/ck", sftp_url(sshd, dest), s3.storage_options, sftp_options(sshd), progress=False)
    assert report.files_sent == len(FILES) and tree_hashes(dest) == tree_hashes(tmp_path / "src")
    again = sync.copy("s3://to-sftp/ck", sftp_url(sshd, dest), s3.storage_options, sftp_options(sshd), progress=False)
    assert (again.files_sent, again.published) == (0, False)


def test_push_and_pull_by_site_name(tmp_path, s3):
    s3.make_bucket("site-sg")
    config = parse_config({
        "experiment": {"home": "home", "default_remote": "sg"},
        "sites": {
            "sg": {"jurisdiction": "SG", "storage": "s3://site-sg/ckpts", "storage_options": s3.storage_options},
            "home": {"jurisdiction": "CN", "storage": (tmp_path / "home").as_uri()},
        },
    }, "test")
    make_tree(tmp_path / "run/step-1", FILES, seed=1)
    make_tree(tmp_path / "run/step-2", FILES, seed=2)
    sync.push(str(tmp_path / "run/step-1"), "sg:exp/", config=config, progress=False)
    report = sync.push(str(tmp_path / "run/step-2"), "sg", config=config, progress=False)
    assert report.dest == "s3://site-sg/ckpts/step-2"
    sync.push(str(tmp_path / "run/step-2"), "sg:exp/", config=config, progress=False)

    pulled = sync.pull("sg:exp/@latest", config=config, progress=False)
    assert pulled.src == "s3://site-sg/ckpts/exp/step-2"
    assert tree_hashes(tmp_path / "home/exp/step-2") == tree_hashes(tmp_path / "run/step-2")
    with pytest.raises(sync.PlanError, match="no published manifest"):
        s3.filesystem().pipe_file("site-sg/ckpts/half/w.bin", b"partial")
        sync.pull("sg:half", config=config, progress=False)
    with pytest.raises(Exception, match="not a site"):
        sync.pull("nowhere:x", config=config, progress=False)


def test_big_file_to_s3_reuses_the_parts_of_an_open_upload(tmp_path, s3):
    from jupyter_split.sync.s3parts import MULTIPART_MIN, PART_SIZE

    src = tmp_path / "src"
    hashes = make_tree(src, {"w/big.bin": MULTIPART_MIN + 12345, "config.json": 100})
    s3.make_bucket("sync-parts")
    fs = s3.filesystem()
    data = (src / "w/big.bin").read_bytes()
    # what a killed run leaves: an open upload with part 1 right and part 2 not
    upload = fs.call_s3("create_multipart_upload", Bucket="sync-parts", Key="ck/w/big.bin")["UploadId"]
    fs.call_s3("upload_part", Bucket="sync-parts", Key="ck/w/big.bin", UploadId=upload, PartNumber=1, Body=data[:PART_SIZE])
    fs.call_s3("upload_part", Bucket="sync-parts", Key="ck/w/big.bin", UploadId=upload, PartNumber=2, Body=b"x" * PART_SIZE)
    report = sync.copy(str(src), "s3://sync-parts/ck", dest_options=s3.storage_options, progress=False)
    assert report.bytes_sent == len(data) - PART_SIZE + 100
    assert s3_hashes(fs, "sync-parts/ck") == hashes
    assert not fs.call_s3("list_multipart_uploads", Bucket="sync-parts").get("Uploads")


def test_a_copy_that_loses_a_publish_race_on_s3_fails_and_keeps_the_winner(tmp_path, s3, monkeypatch):
    # Publishing is a conditional PUT (If-None-Match): a writer that finds a manifest
    # published since it looked fails loudly instead of replacing it.
    loser, winner = tmp_path / "loser", tmp_path / "winner"
    make_tree(loser, FILES)
    winner_hashes = make_tree(winner, {name: size + 1 for name, size in FILES.items()})
    s3.make_bucket("race")
    fs = s3.filesystem()
    real_send = engine.send_all

    def send_then_lose(plan, *args, **kwargs):
        outcome = real_send(plan, *args, **kwargs)
        monkeypatch.setattr(engine, "send_all", real_send)
        sync.copy(str(winner), "s3://race/ck", dest_options=s3.storage_options, progress=False)  # publishes meanwhile
        return outcome

    monkeypatch.setattr(engine, "send_all", send_then_lose)
    with pytest.raises(sync.SyncError, match="another writer published a checkpoint here"):
        sync.copy(str(loser), "s3://race/ck", dest_options=s3.storage_options, progress=False)
    published = read_manifest(fs, "race/ck")
    assert {e.path: e.sha256 for e in published.files} == winner_hashes
    assert s3_hashes(fs, "race/ck") == winner_hashes



@pytest.mark.parametrize("size", [16 << 20, (20 << 20) + 3])  # a whole number of ranges, and not
def test_a_big_object_is_read_in_ranges_on_several_connections_at_once(tmp_path, s3, monkeypatch, size):
    """One GET rides one flow: a big object of a store far away comes in ranged GETs asked for at
    once, in order, whole; one of a near store in one GET."""
    import os

    from jupyter_split.sync import s3read

    s3.make_bucket("ranged")
    src = tmp_path / "src"
    src.mkdir()
    (src / "shard.bin").write_bytes(os.urandom(size))
    sync.copy(str(src), "s3://ranged/ck", dest_options=s3.storage_options, progress=False)

    flight = {"now": 0, "most": 0, "ranges": []}
    real = s3read.S3Ranges._get

    async def get(self, piece):
        flight["now"] += 1
        flight["most"] = max(flight["most"], flight["now"])
        flight["ranges"].append((piece.first, piece.last))
        try:
            return await real(self, piece)
        finally:
            flight["now"] -= 1

    monkeypatch.setattr(s3read.S3Ranges, "_get", get)
    monkeypatch.setattr(s3read, "near", lambda fs, path: False)  # a store far away (this one answers at once)
    report = sync.copy("s3://ranged/ck", str(tmp_path / "home"), s3.storage_options, progress=False)
    assert report.files_sent == 1
    assert tree_hashes(tmp_path / "home") == tree_hashes(src)
    assert flight["most"] == s3read.AHEAD
    assert sorted(flight["ranges"])[-1][1] == size - 1  # to its end, as its first answer says, no further


def test_an_object_that_grew_after_it_was_listed_is_not_sent(tmp_path, s3, monkeypatch):
    """An object longer than listed (written to between the listing and the read) reads long, in
    ranges as in one GET, and the size check refuses it: nothing unlisted is sent as the file."""
    import os

    from jupyter_split.sync import engine, s3read

    s3.make_bucket("grew")
    fs = s3.filesystem()
    data = os.urandom(12 << 20)  # over RANGED_MIN
    fs.pipe_file("grew/ck/shard.bin", data)
    plan = engine.make_plan

    def then_grew(*args, **kwargs):
        planned = plan(*args, **kwargs)
        fs.pipe_file("grew/ck/shard.bin", data + b"more")
        return planned

    monkeypatch.setattr(engine, "make_plan", then_grew)
    for streamed in (False, True):  # a store far (ranges) or near (one GET)
        monkeypatch.setattr(s3read, "near", lambda fs, path: streamed)
        with pytest.raises(sync.SyncError, match="shard.bin"):
            sync.copy("s3://grew/ck", str(tmp_path / f"home{int(streamed)}"), s3.storage_options, progress=False)
        assert not (tmp_path / f"home{int(streamed)}" / "shard.bin").exists()
        fs.pipe_file("grew/ck/shard.bin", data)
