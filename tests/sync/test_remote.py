"""sync over real remote backends: S3 (moto_server), two S3 endpoints, SFTP (the test sshd), S3 to SFTP."""
from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import pytest

from jupyter_split import policy, sync
from jupyter_split.config import parse_config
from jupyter_split.sync import engine, remote_worker, sftp
from jupyter_split.sync.fsutil import SFTP_CIPHERS, resolve
from jupyter_split.sync.manifest import STAGING_NAME, read_manifest

from tests.fixtures.policy import sftp_options
from tests.services.sshd import running_sshd
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


def test_local_to_sftp_resumes_a_part_and_repairs_with_remote_hash(tmp_path, sshd):
    src, dest = tmp_path / "src", tmp_path / "sftp-dest"
    files = {**FILES, "w/big.bin": 17 << 20}  # over RESUMABLE_MIN: sent as a resumable part
    hashes = make_tree(src, files)
    # what a killed run leaves: the first half of the big file in its staging part
    part = dest / STAGING_NAME / "files" / "w" / "big.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes((src / "w/big.bin").read_bytes()[: 8 << 20])
    report = sync.copy(str(src), sftp_url(sshd, dest), dest_options=sftp_options(sshd), progress=False)
    assert report.bytes_sent == sum(files.values()) - (8 << 20)
    assert tree_hashes(dest) == hashes and not (dest / STAGING_NAME).exists()

    flip_byte(dest / "w/shard-1.bin", offset=(1 << 20) + 5)  # hashed by sha256sum on the server
    report = sync.copy(str(src), sftp_url(sshd, dest), dest_options=sftp_options(sshd), deep=True, progress=False)
    assert report.files_sent == 1 and tree_hashes(dest) == hashes


def test_a_fresh_copy_with_big_files_removes_its_staging_without_listing_it(tmp_path, sshd, monkeypatch):
    """The `.part`s of big files leave their folders empty in staging: the commit removes them as
    it knows them, in one round trip, not by listing the tree (four round trips a folder over SFTP)."""
    src, dest = tmp_path / "src", tmp_path / "sftp-dest"
    hashes = make_tree(src, {**FILES, "w/deep/big.bin": 17 << 20})
    listed: list[str] = []
    levels, drop, dropping = sftp._levels, engine._drop_staging, []

    async def counted(fs, root):
        if dropping:
            listed.append(root)
        return await levels(fs, root)

    def watched(dest, folders=None):
        dropping.append(True)
        drop(dest, folders)
    monkeypatch.setattr(sftp, "_levels", counted)
    monkeypatch.setattr(engine, "_drop_staging", watched)
    sync.copy(str(src), sftp_url(sshd, dest), dest_options=sftp_options(sshd), progress=False)
    assert tree_hashes(dest) == hashes and not (dest / STAGING_NAME).exists()
    assert dropping and listed == [], f"the staging tree was listed to remove it: {listed}"


def sftp_requests(caplog) -> list[str]:
    """The SFTP requests asyncssh logged as sent ("opendir for PATH", "rmdir for PATH", ...)."""
    messages = (r.getMessage() for r in caplog.records if r.name == "asyncssh.sftp")
    return [m.partition("] Sending ")[2] for m in messages if "] Sending " in m]


def test_a_copy_does_not_look_for_a_staging_folder_its_destination_did_not_show(tmp_path, sshd, caplog):
    """A fresh copy of small files, then a no-op re-sync: the destination's listing showed no
    staging folder and neither copy put anything there, so neither looks for one to remove (over a
    far link: two round trips at the end of every copy). One the listing did show is removed."""
    src, dest = tmp_path / "src", tmp_path / "sftp-dest"
    make_tree(src, FILES)
    staging = f"{dest}/{STAGING_NAME}"
    copy = lambda: sync.copy(str(src), sftp_url(sshd, dest), dest_options=sftp_options(sshd), progress=False)  # noqa: E731
    with caplog.at_level(logging.DEBUG, logger="asyncssh.sftp"):
        assert copy().files_sent == len(FILES)
        assert copy().files_skipped == len(FILES)
        sent = sftp_requests(caplog)
        assert any(f"for {staging}/files" in request for request in sent), "the plan looks into staging"
        assert [r for r in sent if r.startswith("rmdir") or r.endswith(f" {staging}")] == []

        (dest / STAGING_NAME / "files").mkdir(parents=True)  # an interrupted copy's, empty
        caplog.clear()
        assert copy().files_skipped == len(FILES)
        assert not (dest / STAGING_NAME).exists()
        assert f"rmdir for {staging}" in sftp_requests(caplog)


def test_a_copys_own_connections_are_closed_on_their_event_loop(tmp_path, sshd, monkeypatch):
    """asyncssh is not thread-safe: a connection closed from the copy's thread while its loop sent the
    sessions' exits once broke a transport mid-write (`'NoneType' object has no attribute 'get_debug'`)."""
    import asyncio

    import asyncssh

    closes: list[bool] = []
    real = asyncssh.SSHClientConnection.close

    def close(self):
        try:
            asyncio.get_running_loop()
            closes.append(True)
        except RuntimeError:
            closes.append(False)  # called off any event loop
        return real(self)
    monkeypatch.setattr(asyncssh.SSHClientConnection, "close", close)
    src = tmp_path / "src"
    make_tree(src, {"big.bin": 20 << 20})  # a big file: the copy opens connections of its own
    sync.copy(str(src), sftp_url(sshd, tmp_path / "dest"), dest_options=sftp_options(sshd), progress=False)
    deadline = time.monotonic() + 10  # the closes are sent to the loop: they run just after
    while not closes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closes and all(closes), closes


def test_s3_to_sftp_streams_between_two_remote_backends(tmp_path, s3, sshd):
    make_tree(tmp_path / "src", FILES)
    s3.make_bucket("to-sftp")
    sync.copy(str(tmp_path / "src"), "s3://to-sftp/ck", dest_options=s3.storage_options, progress=False)
    dest = tmp_path / "landed"
    report = sync.copy("s3://to-sftp/ck", sftp_url(sshd, dest), s3.storage_options, sftp_options(sshd), progress=False)
    assert report.files_sent == len(FILES) and tree_hashes(dest) == tree_hashes(tmp_path / "src")
    again = sync.copy("s3://to-sftp/ck", sftp_url(sshd, dest), s3.storage_options, sftp_options(sshd), progress=False)
    assert (again.files_sent, again.published) == (0, False)


def test_sftp_to_local_pulls_small_files_at_once_and_names_one_that_does_not_match(tmp_path, sshd):
    files = {f"tok/part-{i:03d}.json": 200 + i for i in range(150)} | {"w/shard.bin": 1 << 20}
    hashes = make_tree(tmp_path / "src", files)
    remote = tmp_path / "site"
    sync.copy(str(tmp_path / "src"), sftp_url(sshd, remote), dest_options=sftp_options(sshd), progress=False)
    report = sync.copy(sftp_url(sshd, remote), str(tmp_path / "home"), sftp_options(sshd), progress=False)
    assert (report.files_sent, report.files_verified) == (len(files), len(files))
    assert tree_hashes(tmp_path / "home") == hashes

    flip_byte(remote / "tok/part-007.json", offset=3)  # the site's copy no longer matches its manifest
    with pytest.raises(sync.SyncError) as caught:
        sync.copy(sftp_url(sshd, remote), str(tmp_path / "again"), sftp_options(sshd), retries=1, backoff=0,
                  progress=False)
    assert list(caught.value.failed) == ["tok/part-007.json"]
    assert "changed while it was read (or does not match its manifest)" in caught.value.failed["tok/part-007.json"]
    assert len(caught.value.done) == len(files) - 1 and not (tmp_path / "again" / "manifest.json").exists()


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


def test_sftp_copy_after_the_link_dropped_reconnects(tmp_path, sshd):
    """fsspec caches one SSH filesystem per address: after a dropped link it must not be reused dead."""
    src, dest = tmp_path / "src", tmp_path / "sftp-dest"
    hashes = make_tree(src, FILES)
    sync.copy(str(src), sftp_url(sshd, dest), dest_options=sftp_options(sshd), progress=False)
    import time


    cached, _ = fsspec.core.url_to_fs(sftp_url(sshd, dest), **sftp_options(sshd), encryption_algs=SFTP_CIPHERS)
    sshd.drop_connections()
    deadline = time.monotonic() + 30
    while not cached.client.is_closed() and time.monotonic() < deadline:  # the client notices the drop
        time.sleep(0.05)
    assert cached.client.is_closed()
    flip_byte(src / "w/shard-1.bin", offset=7)
    report = sync.copy(str(src), sftp_url(sshd, dest), dest_options=sftp_options(sshd), progress=False)
    assert report.files_sent == 1 and tree_hashes(dest) == tree_hashes(src) != hashes


@pytest.mark.parametrize("python", ["python3", "no-such-python"], ids=["python3", "sha256sum"])
def test_remote_worker_names_any_file_and_leaves_out_missing_ones(tmp_path, sshd, monkeypatch, python):
    # Without a python3 on the server the kept shell runs coreutils' sha256sum: same answers.
    monkeypatch.setattr(remote_worker, "PYTHON", python)
    names = ["plain.bin", "with space.bin", "new\nline.bin", "back\\slash.bin", "quote'\"$(x).bin", "d/ü.bin"]
    expected = {}
    for i, name in enumerate(names):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(bytes([i]) * (1000 + i))
        expected[str(tmp_path / name)] = hashlib.sha256(bytes([i]) * (1000 + i)).hexdigest()
    loc = resolve(sftp_url(sshd, tmp_path), sftp_options(sshd))
    try:
        missing = str(tmp_path / "gone.bin")
        assert loc.worker.hash([*expected, missing]) == expected
        assert loc.worker.writes is (python == "python3")
        assert loc.worker.hash([str(tmp_path / "plain.bin")]) == {str(tmp_path / "plain.bin"): expected[str(tmp_path / "plain.bin")]}
    finally:
        loc.close()


def test_remote_worker_writes_sends_back_and_renames_small_files(tmp_path, sshd):
    # The python3 worker: files in one stream, each hashed as stored; one it cannot write
    # (its folder is missing) or read (gone) is left out for the caller to move the usual way.
    (tmp_path / "out").mkdir()
    files = [(str(tmp_path / "out" / name), name.encode() * 50) for name in ("a.json", "b c.json", "new\nline", "ü.bin")]
    loc = resolve(sftp_url(sshd, tmp_path), sftp_options(sshd))
    try:
        stored = loc.worker.put([*files, (str(tmp_path / "missing" / "x.json"), b"lost")])
        assert stored == {path: hashlib.sha256(data).hexdigest() for path, data in files}
        assert all(Path(path).read_bytes() == data for path, data in files)
        (tmp_path / "out" / "empty").write_bytes(b"")
        back = loc.worker.get([path for path, _ in files] + [str(tmp_path / "gone"), str(tmp_path / "out" / "empty")])
        assert back == {**dict(files), str(tmp_path / "out" / "empty"): b""}
        moves = [(path, path + ".moved") for path, _ in files]
        assert loc.worker.move([*moves, (str(tmp_path / "nothing"), str(tmp_path / "nothing2"))]) == {new for _, new in moves}
        assert all(Path(new).read_bytes() == data for (_, new), (_, data) in zip(moves, files))
    finally:
        loc.close()


def test_sftp_only_account_is_verified_by_reading_back(tmp_path):
    # An account that may run no command (ForceCommand internal-sftp): nothing hashes on the
    # server, so every file is read back over SFTP, and a corrupted one is still caught.
    with running_sshd(tmp_path / "sftp-only", ForceCommand="internal-sftp") as server:
        src, dest = tmp_path / "src", tmp_path / "dest"
        hashes = make_tree(src, FILES)
        url, options = sftp_url(server, dest), sftp_options(server)
        report = sync.copy(str(src), url, dest_options=options, progress=False)
        assert (report.files_sent, report.files_verified) == (len(FILES), len(FILES))
        assert tree_hashes(dest) == hashes
        flip_byte(dest / "w/shard-0.bin", offset=12345)
        report = sync.copy(str(src), url, dest_options=options, deep=True, progress=False)
        assert report.files_sent == 1 and tree_hashes(dest) == hashes
        loc = resolve(url, options)
        try:
            assert loc.worker.hash([str(dest / "config.json")]) == {}
        finally:
            loc.close()


def test_a_server_that_allows_few_sessions_still_gets_every_file(tmp_path, monkeypatch):
    # sshd's MaxSessions: big files then share the sessions there are, or go through sshfs's; a
    # connection with no session of the copy's own is asked once per file, not for every piece
    # (it was: 4,284 opens found no session in this copy)
    from jupyter_split.config import MAX_CONNECTIONS
    from jupyter_split.sync import sftp_files

    sessionless: list[str] = []
    open_file = sftp_files.SftpStreams.open

    def counted(streams, path, offset=0, *, read=False):
        opened = open_file(streams, path, offset, read=read)
        if opened is None:
            sessionless.append(path)
        return opened

    monkeypatch.setattr(sftp_files.SftpStreams, "open", counted)
    with running_sshd(tmp_path / "two-sessions", MaxSessions="2") as server:
        src, dest = tmp_path / "src", tmp_path / "dest"
        hashes = make_tree(src, {"a.bin": 17 << 20, "b.bin": 17 << 20, "c.bin": 17 << 20, "small.json": 100})
        report = sync.copy(str(src), sftp_url(server, dest), dest_options=sftp_options(server), progress=False)
        assert report.files_verified == 4 and tree_hashes(dest) == hashes
    assert len(sessionless) <= 3 * MAX_CONNECTIONS, f"{len(sessionless)} opens found no session"


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



def test_lookups_at_once_on_a_new_connection_share_its_first_sftp_session(tmp_path, sshd):
    """A copy's plan asks three things of the destination at once, as soon as it connects: they must
    share one new SFTP session, not open one each in turn (each costs round trips on a far link)."""
    fs = fsspec.filesystem("ssh", host="127.0.0.1", port=sshd.port, skip_instance_cache=True, **sftp_options(sshd))
    try:
        assert fs._pool.active_channels == 0
        with ThreadPoolExecutor(max_workers=3) as pool:
            found = list(pool.map(lambda _: sftp.find(fs, str(tmp_path)), range(3)))
        assert found[0] == found[1] == found[2]
        assert fs._pool.active_channels == 1
    finally:
        fs.client.close()


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
