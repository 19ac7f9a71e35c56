"""Host keys as OpenSSH checks them, for every SSH door: a site's login and `ssh://` storage.

A known_hosts file is read as OpenSSH reads it. A server on a port other than 22 is known
only by a `[host]:port` entry: asyncssh alone falls back to a plain `host` entry, which is
the key of whatever listens on port 22 and proves nothing about another port. A key
marked `@revoked` is refused and said to be revoked. When a key is refused, one
explanation serves every door: what the server shows (its SHA256 fingerprint), what the
file records, and the command that fixes it. Nothing here is ever accepted silently.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .library import asyncssh

DEFAULT_FILE = "~/.ssh/known_hosts"
DEFAULT_PORT = 22


def entry_name(host: str, port: int) -> str:
    """How known_hosts (and `ssh-keygen -R`) names `host` on `port`."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


def read(path: str) -> asyncssh.SSHKnownHosts:
    """The parsed file; a line asyncssh cannot read is a ValueError naming the file and the fix."""
    try:
        return asyncssh.read_known_hosts(path)
    except ValueError as exc:
        raise ValueError(f"known_hosts file {path} cannot be read ({exc}). Fix or delete that line; "
                         f"`ssh-keygen -F HOST -f {path}` shows what OpenSSH makes of it.") from None


def match(path: str, host: str, addr: str, port: int | None) -> tuple[list[Any], ...]:
    """asyncssh's 7 lists (trusted keys, CA keys, revoked keys, then X.509 ones) for `host`
    (or its address) on `port`, looked up only under the name that port has (no fallback)."""
    known = read(path)
    port = port or DEFAULT_PORT
    names = dict.fromkeys(entry_name(name, port) for name in (host, addr) if name)
    # port None: asyncssh then looks the name up as written, with no second try
    found = [known.match(name, "", None) for name in names]
    return tuple([item for result in found for item in result[i]] for i in range(7))


@dataclass(frozen=True)
class KnownHosts:
    """A known_hosts file in the form asyncssh's `known_hosts` option takes: called with
    (host, addr, port) as it connects, it answers what `match` finds."""

    path: str

    def __call__(self, host: str, addr: str, port: int | None) -> tuple[list[Any], ...]:
        return match(self.path, host, addr, port)


def file_of(value: Any) -> str:
    """The known_hosts file a `known_hosts` option names (a path, or a `KnownHosts`), default ~/.ssh/known_hosts.

    None (which asyncssh and sshfs read as "check nothing") and anything else are a ValueError."""
    if isinstance(value, KnownHosts):
        return value.path
    if value is None:
        raise ValueError("known_hosts=None would turn host key checking off, and every SSH connection here checks "
                         f"the server's key. Leave it out (then {DEFAULT_FILE} is used) or name a known_hosts file.")
    if value == ():  # asyncssh's "not given"
        value = DEFAULT_FILE
    if not isinstance(value, (str, Path)):
        raise ValueError(f"known_hosts={value!r} is not a file; name the known_hosts file that holds the server's key "
                         f"(default {DEFAULT_FILE}).")
    return str(Path(value).expanduser())


async def server_key(host: str, port: int, timeout: float, **connect: Any) -> tuple[asyncssh.SSHKey | None, str]:
    """The key the server shows in a key exchange (no login), or None and why it could not be read.

    `connect`: asyncssh's tunnel, config and server_host_key_algs, as the refused connection had them."""
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port, **connect), timeout)
        return key, "" if key else "the server showed none"
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
        return None, str(exc) or type(exc).__name__


def algorithms_for(path: str, host: str, port: int) -> list[str]:
    """The signature algorithms of the keys on record for `host`, as a connection asks for
    them first: the key fetched to explain a refusal is then of the kind that was refused."""
    try:
        trusted = match(path, host, "", port)[0] if Path(path).is_file() else []
    except ValueError:
        trusted = []
    return [alg.decode() for key in trusted for alg in key.sig_algorithms]


def explain(label: str, host: str, port: int, path: str, key: asyncssh.SSHKey | None, why: str = "") -> str:
    """Why the server's `key` is refused for `host`:`port` under the known_hosts file `path`, and the fix.

    `label` names the door (a site, a storage URL); `why` says why `key` could not be read (None)."""
    entry = entry_name(host, port)
    shown = f"{key.get_algorithm()} {key.get_fingerprint('sha256')}" if key else f"(could not read it: {why})"
    keyscan = f"`ssh-keyscan -p {port} {host} >> {path}`"
    if not Path(path).is_file():
        return (f"{label}: known_hosts file {path} does not exist, so the host key of {entry} ({shown}) cannot be "
                f"checked and the connection was refused before logging in. If the server's admins confirm that "
                f"fingerprint, record it: {keyscan}, or set `known_hosts` to the file that holds it.")
    trusted, _, revoked = match(path, host, "", port)[:3]
    if key is not None and key in revoked:
        return (f"{label}: the host key of {entry} ({shown}) is marked @revoked in {path}: it must never be trusted "
                f"again, so the connection was refused. Ask the server's admins for its new key; once they have "
                f"replaced it, record the new one: {keyscan}.")
    if trusted:
        on_record = ", ".join(f"{k.get_algorithm()} {k.get_fingerprint('sha256')}" for k in trusted)
        return (f"{label}: the host key of {entry} CHANGED. The server shows {shown}; {path} records {on_record}. "
                f"This can be an attack: do not connect until the server's admins confirm the new key. Then remove "
                f"the old one with `ssh-keygen -R '{entry}' -f {path}` and add the new one: {keyscan}.")
    note = ""
    if port != DEFAULT_PORT and match(path, host, "", DEFAULT_PORT)[0]:
        note = (f" ({path} holds a key for {host} on port {DEFAULT_PORT} only; as OpenSSH does, that entry does not "
                f"vouch for port {port}, which needs its own `{entry}` entry.)")
    return (f"{label}: the host key of {entry} is unknown ({shown}), so the connection was refused.{note} If the "
            f"server's admins confirm that fingerprint, record it: {keyscan}.")
