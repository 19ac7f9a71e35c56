"""The shared SSH connection (jupyter_split.ssh.connection) against a real sshd: keys, timeouts, SFTP, bastions."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from jupyter_split.config import SiteConfig, parse_config
from jupyter_split.ssh.connection import BULK_BYTES, HostKeyError, SiteConnection, SshError, connection_for


def site_of(sshd, **overrides) -> SiteConfig:
    return SiteConfig(name="sg", **sshd.site(**overrides))


def run(coro):
    return asyncio.run(coro)


def test_commands_are_quoted_and_the_connection_is_shared(sshd):
    async def go():
        site = site_of(sshd)
        conn = connection_for(site)
        assert connection_for(site) is conn
        done = await conn.run(["printf", "%s|", "a b", "it's", "$(id)", ";", "`x`"])
        assert done.returncode == 0
        assert done.text() == "a b|it's|$(id)|;|`x`|"
        first = await conn.connection()
        again = await conn.run(["true"])
        assert again.returncode == 0 and await conn.connection() is first
        failed = await conn.run(["sh", "-c", "echo oops >&2; exit 3"])
        assert (failed.returncode, failed.stderr) == (3, b"oops\n")
        await conn.close()
    run(go())


def test_sftp_write_is_atomic_and_read_honours_offset(sshd, tmp_path):
    async def go():
        conn = SiteConnection(site_of(sshd))
        target = str(tmp_path / "deep" / "dir" / "file with space.bin")
        payload = bytes(range(256)) * 4096
        await conn.write_file(target, payload)
        assert (tmp_path / "deep" / "dir" / "file with space.bin").read_bytes() == payload
        assert sorted(p.name for p in (tmp_path / "deep" / "dir").iterdir()) == ["file with space.bin"]
        assert await conn.read_file(target, 1000) == payload[1000:]
        with pytest.raises(FileNotFoundError, match="missing"):
            await conn.read_file(str(tmp_path / "missing"))
        await conn.close()
    run(go())


def test_unknown_host_key_is_refused_with_fingerprint_and_fix(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError) as err:
        run(SiteConnection(site_of(sshd, known_hosts=str(empty))).connection())
    message = str(err.value)
    assert "unknown" in message and sshd.fingerprint in message and "ssh-keyscan" in message
    with pytest.raises(HostKeyError, match="unknown"):  # the bulk connection logs in the same way
        run(SiteConnection(site_of(sshd, known_hosts=str(empty))).write_file(str(tmp_path / "x"), bytes(2 * BULK_BYTES)))


def test_changed_host_key_is_refused_showing_both_keys(sshd, tmp_path):
    from tests.services.sshd import fingerprint_of, keygen
    other = tmp_path / "other"
    keygen(other, "impostor")
    algo, blob = (tmp_path / "other.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {algo} {blob}\n")
    with pytest.raises(HostKeyError) as err:
        run(SiteConnection(site_of(sshd, known_hosts=str(known))).connection())
    message = str(err.value)
    assert "CHANGED" in message and sshd.fingerprint in message
    assert fingerprint_of(tmp_path / "other.pub") in message and "ssh-keygen -R" in message


def test_missing_known_hosts_file_is_an_error_not_trust(sshd, tmp_path):
    with pytest.raises(HostKeyError, match="does not exist"):
        run(SiteConnection(site_of(sshd, known_hosts=str(tmp_path / "nope"))).connection())


def test_bad_identity_files(sshd, tmp_path):
    with pytest.raises(SshError, match="identity_file .* does not exist"):
        run(SiteConnection(site_of(sshd, identity_file=str(tmp_path / "absent"))).connection())
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    with pytest.raises(SshError, match="cannot be used"):
        run(SiteConnection(site_of(sshd, identity_file=str(garbage))).connection())
    from tests.services.sshd import keygen
    stranger = tmp_path / "stranger"
    keygen(stranger, "not-authorized")
    with pytest.raises(SshError, match="refused the login") as err:
        run(SiteConnection(site_of(sshd, identity_file=str(stranger))).connection())
    assert "authorized_keys" in str(err.value)


def test_refused_port_fails_fast_with_a_clear_message(sshd):
    from tests.services._proc import free_port
    with pytest.raises(SshError, match="cannot connect to .*Check host and port"):
        run(SiteConnection(site_of(sshd, port=free_port())).connection())


def test_silent_host_fails_within_the_connect_timeout(sshd):
    # A listener that completes TCP but never speaks SSH: the case of a black-holed link.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        started = time.monotonic()
        with pytest.raises(SshError, match="did not answer within 1 s"):
            run(SiteConnection(site_of(sshd, port=silent.getsockname()[1], connect_timeout=1.0)).connection())
        assert time.monotonic() - started < 10


def test_proxy_jump_through_a_bastion_site(sshd):
    config = parse_config({
        "experiment": {"home": "bastion", "default_remote": "inner"},
        "sites": {"bastion": sshd.site(), "inner": sshd.site(proxy_jump="bastion")},
    }, "test")

    async def go():
        conn = connection_for(config.sites["inner"], config)
        done = await conn.run(["sh", "-c", 'echo "$SSH_CONNECTION"'])
        assert done.returncode == 0 and done.text().startswith("127.0.0.1")
        assert conn.interactive.bastion is not None and not conn.interactive.bastion.is_closed()
        await conn.close()
    run(go())


def test_proxy_jump_as_user_at_host_port(sshd):
    async def go():
        conn = SiteConnection(site_of(sshd, proxy_jump=f"{sshd.user}@127.0.0.1:{sshd.port}"))
        assert (await conn.run(["echo", "via"])).text() == "via\n"
        await conn.close()
    run(go())


def test_reconnect_after_the_server_drops_the_link(sshd):
    async def go():
        conn = SiteConnection(site_of(sshd))
        assert (await conn.run(["true"])).returncode == 0
        sshd.drop_connections()
        await asyncio.sleep(0.2)
        await conn.reconnect(first_delay=0.05)
        assert (await conn.run(["echo", "back"])).text() == "back\n"
        await conn.close()
    run(go())


def test_transfers_above_the_threshold_take_a_second_connection(sshd, tmp_path):
    big = bytes(range(256)) * (2 * BULK_BYTES // 256 + 1)
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "local").write_bytes(big)

    async def go():
        conn = SiteConnection(site_of(sshd))
        await conn.write_file(str(tmp_path / "small"), b"s" * 1000)
        assert await conn.read_file(str(tmp_path / "small")) == b"s" * 1000
        assert await conn.read_file(str(tmp_path / "big"), 7, BULK_BYTES) == big[7:BULK_BYTES + 7]
        assert await conn.read_file(str(tmp_path / "big"), -10) == big[-10:]
        assert not conn.bulk.connected, "small transfers opened the bulk connection"
        assert await conn.read_file(str(tmp_path / "big")) == big  # its size is found first, then it is read on bulk
        interactive, bulk = conn.interactive.conn, conn.bulk.conn
        assert bulk is not None and bulk is not interactive
        assert bulk.get_extra_info("sockname") != interactive.get_extra_info("sockname")
        assert await conn.read_file(str(tmp_path / "big"), BULK_BYTES, BULK_BYTES + 1) == big[BULK_BYTES:2 * BULK_BYTES + 1]
        await conn.write_file(str(tmp_path / "copy"), big)
        assert (tmp_path / "copy").read_bytes() == big and conn.bulk.conn is bulk
        # a bulk connection that dropped comes back on its next use; the interactive one is left alone
        bulk.abort()
        await asyncio.sleep(0.1)
        await conn.put(tmp_path / "local", str(tmp_path / "put"))
        assert (tmp_path / "put").read_bytes() == big
        assert conn.bulk.conn is not bulk and conn.interactive.conn is interactive
        await conn.reconnect(first_delay=0.05)
        assert conn.interactive.conn is not interactive and conn.bulk.connected, "a reconnect ended a healthy transfer path"
        # after a failure, a connection made since is what a reconnect would give; one made before is not kept
        conn.interactive.failing()
        await conn.reconnect(first_delay=0.05, keep_fresh=True)
        made_after = conn.interactive.conn
        assert made_after is not None and made_after is not interactive
        await conn.reconnect(first_delay=0.05, keep_fresh=True)
        assert conn.interactive.conn is made_after
        await conn.close()
        assert not conn.connected and not conn.bulk.connected
    run(go())
