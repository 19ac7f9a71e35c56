"""sync to and from an SFTP server (the test sshd): resumed parts, staging, the server's process, dropped
links, the server's limits, and the requests a copy sends."""
from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import pytest

from jupyter_split import sync
from jupyter_split.sync import engine, remote_worker, sftp
from jupyter_split.sync.fsutil import SFTP_CIPHERS, resolve
from jupyter_split.sync.manifest import STAGING_NAME

from tests.fixtures.policy import sftp_options
from tests.services.sshd import running_sshd
from tests.sync.test_local import flip_byte, make_tree, tree_hashes
from tests.sync.test_remote import FILES, sftp_url

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("split_home")]


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
