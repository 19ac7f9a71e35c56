"""Reaching an SSH server: where it is (an endpoint, maybe behind a jump host), its host key
checked against known_hosts, and the login. An unknown or changed key is an error that shows
the server's fingerprint and the command that fixes it; nothing is ever accepted silently.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .library import asyncssh

from ..errors import SplitError
from . import hostkeys
from ..config import Config, SiteConfig

CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes128-ctr", "aes256-ctr"]


class SshError(SplitError, RuntimeError):
    """An SSH site could not be reached or used; the message says which and what to do."""

    http_status, http_reason = 502, "site not reachable"


class HostKeyError(SshError):
    """The server's host key is unknown or differs from the one on record."""


class LinkError(SshError, ConnectionError):
    """The network failed (refused, silent, dropped): worth retrying, unlike a refused key.

    Also a ConnectionError, so code that follows a run reconnects instead of giving up.
    """


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, with the files that prove who is who."""

    label: str
    host: str
    port: int
    user: str | None
    identity_file: str | None
    known_hosts: str
    connect_timeout: float
    keepalive_interval: float

    @property
    def address(self) -> str:
        """`[user@]host:port`, for messages."""
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def endpoint_of(site: SiteConfig) -> Endpoint:
    """How to reach `site`: its host, port, user, key and known_hosts file, with `~` expanded.

    Raises SshError when the site has no `host`.
    """
    if not site.host:
        raise SshError(f"site {site.name!r} has no `host`: set host (and user, identity_file) under [sites.{site.name}]")
    return Endpoint(
        label=f"site {site.name!r}",
        host=site.host, port=site.port, user=site.user,
        identity_file=str(Path(site.identity_file).expanduser()) if site.identity_file else None,
        known_hosts=str(Path(site.known_hosts or "~/.ssh/known_hosts").expanduser()),
        connect_timeout=site.connect_timeout, keepalive_interval=site.keepalive_interval,
    )


def jump_endpoint(site: SiteConfig, config: Config | None) -> Endpoint | None:
    """The bastion of `site`: another site's name, or `[user@]host[:port]` with this site's keys."""
    spec = site.proxy_jump
    if not spec:
        return None
    if config is not None and spec in config.sites:
        return endpoint_of(config.sites[spec])
    user, _, hostport = spec.rpartition("@")
    host, port = hostport, 22
    if hostport.count(":") == 1:
        host, _, raw_port = hostport.partition(":")
        if not raw_port.isdigit():
            raise SshError(f"site {site.name!r}: proxy_jump {spec!r} has a bad port; write it as user@host:port")
        port = int(raw_port)
    if not host:
        raise SshError(f"site {site.name!r}: proxy_jump {spec!r} names no host; write user@host[:port] or a site name")
    base = endpoint_of(site)
    return Endpoint(f"bastion {spec!r} of site {site.name!r}", host, port, user or site.user, base.identity_file,
                    base.known_hosts, base.connect_timeout, base.keepalive_interval)


def _check_files(ep: Endpoint) -> None:
    if Path(ep.known_hosts).is_file():
        try:
            hostkeys.read(ep.known_hosts)
        except ValueError as exc:
            raise HostKeyError(f"{ep.label}: {exc}") from None
    if ep.identity_file is not None:
        key = Path(ep.identity_file)
        if not key.is_file():
            raise SshError(f"{ep.label}: identity_file {key} does not exist. Fix `identity_file` or create the key "
                           f"with `ssh-keygen -t ed25519 -f {key}` and install {key}.pub on {ep.host}.")


def _options(ep: Endpoint) -> dict[str, Any]:
    options: dict[str, Any] = dict(
        # OpenSSH's reading of the file: a `[host]:port` entry for a port other than 22, and @revoked
        host=ep.host, port=ep.port, known_hosts=hostkeys.KnownHosts(ep.known_hosts),
        connect_timeout=ep.connect_timeout, login_timeout=ep.connect_timeout,
        keepalive_interval=ep.keepalive_interval, keepalive_count_max=3,
        # The site table is the whole truth: ~/.ssh/config must not silently redirect a site.
        config=[],
        # asyncssh encrypts in Python: AES-GCM (OpenSSL, AES-NI) and fewer, larger packets in a
        # wider window are what keep a 256 MB variable near scp's speed on a long link.
        encryption_algs=CIPHERS, compression_algs=["none"], window=16 << 20, max_pktsize=256 << 10,
    )
    if ep.user:
        options["username"] = ep.user
    if ep.identity_file:
        options["client_keys"] = [ep.identity_file]
        options["agent_path"] = None
    return options


async def _explain_host_key(ep: Endpoint, tunnel: Any) -> HostKeyError:
    """Fetch the key the server shows (a key exchange, no login) and say why it is refused."""
    algs = hostkeys.algorithms_for(ep.known_hosts, ep.host, ep.port) or ()
    key, why = await hostkeys.server_key(ep.host, ep.port, ep.connect_timeout, tunnel=tunnel or (), config=[],
                                         server_host_key_algs=algs)
    return HostKeyError(hostkeys.explain(ep.label, ep.host, ep.port, ep.known_hosts, key, why))


async def open_connection(ep: Endpoint, tunnel: asyncssh.SSHClientConnection | None = None) -> asyncssh.SSHClientConnection:
    """Connect and authenticate, turning every failure into an SshError that names the fix."""
    _check_files(ep)
    if not Path(ep.known_hosts).is_file():  # refused before logging in, with the fingerprint to check
        raise await _explain_host_key(ep, tunnel)
    options = _options(ep)
    if tunnel is not None:
        options["tunnel"] = tunnel
    try:
        # connect_timeout covers TCP and key exchange; wait_for also bounds a server that never answers.
        return await asyncio.wait_for(asyncssh.connect(**options), ep.connect_timeout * 2 + 1)
    except asyncssh.HostKeyNotVerifiable:
        raise await _explain_host_key(ep, tunnel) from None
    except asyncssh.PermissionDenied:
        key = ep.identity_file or "your default keys and agent"
        raise SshError(f"{ep.label}: {ep.address} refused the login with {key}. Install the public key "
                       f"({key}.pub) in ~{ep.user or ''}/.ssh/authorized_keys there, or fix `user`/`identity_file`.") from None
    except asyncssh.KeyImportError as exc:
        raise SshError(f"{ep.label}: identity_file {ep.identity_file} cannot be used ({exc}). Point it at an "
                       "unencrypted OpenSSH private key, or load a protected one into ssh-agent and unset identity_file.") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise LinkError(f"{ep.label}: {ep.address} did not answer within {ep.connect_timeout:g} s (connect_timeout). "
                       "Check the host, the port, the VPN or bastion (proxy_jump), or raise connect_timeout.") from None
    except (OSError, asyncssh.Error) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        raise LinkError(f"{ep.label}: cannot connect to {ep.address}: {reason}. Check host and port, and that sshd "
                       "runs there (try `ssh -p PORT USER@HOST true`).") from None
