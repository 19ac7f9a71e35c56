"""The `sshd` fixture itself: a real OpenSSH server that checks keys and can drop links."""
from __future__ import annotations

import subprocess
import time


def _ssh(sshd, *remote: str, known_hosts: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-p", str(sshd.port), "-i", sshd.identity_file,
         "-o", f"UserKnownHostsFile={known_hosts or sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", f"{sshd.user}@{sshd.host}", *remote],
        capture_output=True, text=True, timeout=30,
    )


def test_openssh_client_logs_in_with_checked_host_key(sshd):
    done = _ssh(sshd, "echo", "hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n"
    assert sshd.fingerprint.startswith("SHA256:")
    assert sshd.site()["port"] == sshd.port


def test_unknown_host_key_is_refused_by_openssh(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    done = _ssh(sshd, "true", known_hosts=str(empty))
    assert done.returncode != 0
    assert "Host key verification failed" in done.stderr


def test_drop_connections_cuts_a_live_session(sshd):
    # connections other tests left (a copy's, closing) do not count as this one's: wait for a new one
    before = set(sshd.connection_pids())
    proc = subprocess.Popen(
        ["ssh", "-p", str(sshd.port), "-i", sshd.identity_file, "-o", f"UserKnownHostsFile={sshd.known_hosts}",
         "-o", "BatchMode=yes", f"{sshd.user}@{sshd.host}", "sleep", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while not set(sshd.connection_pids()) - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sshd.drop_connections() >= 1
        assert proc.wait(timeout=15) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sshd.process.poll() is None, "the listening sshd must survive a drop"
