"""Where a URL or path points, in forms that `..`, symlinks, percent-encoding, case and
trailing slashes cannot disguise, and the resident globs matched against them.

A location is read every way a filesystem might read it (raw and percent-decoded,
lexically normalised and with symlinks resolved, with and without a query string),
and it is resident when any reading matches. Matching ignores case on purpose: a
guard that can be passed by typing `PII` for `pii` on a case-insensitive store is
no guard, and labelling one extra path costs only a question.
"""
from __future__ import annotations

import os
import posixpath
import re
import socket
import time
import unicodedata
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Callable, Iterable, Sequence, TypeVar
from urllib.parse import unquote

from ..config import Config, ConfigError, SiteConfig

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(//)?")
_ALIASES = {"local": "file", "s3a": "s3", "s3n": "s3", "gcs": "gs", "ssh": "sftp", "abfss": "abfs"}
_WILDCARD = re.compile(r"[*?\[]")
RECENT_SECONDS = 2.0
T = TypeVar("T")
_real_folders: dict[str, tuple[float, str]] = {}
_folder_parts: dict[str, tuple[float, tuple[str, ...]]] = {}
_compiled: dict[str, tuple[float, tuple["Glob", ...]]] = {}
_storage_readings: dict[str, tuple[float, frozenset["Location"]]] = {}
# Enough rounds to undo double and triple encoding (`%252e` -> `%2e` -> `.`).
_DECODE_ROUNDS = 4

# (scheme, components): for `file` the path's components, else (host, *path components).
Location = tuple[str, tuple[str, ...]]


def scheme_of(text: str) -> tuple[str, str]:
    """The canonical scheme and the rest; a bare path (or `C:` drive) is `file`."""
    match = _SCHEME.match(text)
    if not match:
        return "file", text
    scheme = match.group(1).lower()
    return _ALIASES.get(scheme, scheme), text[match.end():]


def _decodings(text: str) -> set[str]:
    found = {text}
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(text, errors="surrogateescape")
        if decoded == text:
            break
        found.add(decoded)
        text = decoded
    return found


def components(path: str) -> tuple[str, ...]:
    """A path as the globs match it: normalised, NFC, casefolded components."""
    path = unicodedata.normalize("NFC", path)
    path = posixpath.normpath("/" + path.lstrip("/"))
    return tuple(part.casefold() for part in path.split("/") if part)


def host_of(netloc: str) -> str:
    """The host of a URL's netloc, lower case: no user, no port; an IPv6 literal keeps its brackets."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):  # IPv6 literal, maybe with a port after the bracket
        return host[: host.find("]") + 1].lower()
    return host.partition(":")[0].lower()


def _local_readings(path: str) -> set[str]:
    path = os.path.expanduser(path)
    readings = {os.path.normpath(path if path.startswith("/") else os.path.join(os.getcwd(), path))}
    try:
        # `link/..` is resolved physically by the kernel: resolve before any lexical `..`
        readings.add(resolved(path))
    except (ValueError, OSError):  # an embedded NUL or a symlink loop: no file to follow
        pass
    return readings


def resolved(path: str) -> str:
    """`path` made absolute with its symlinks resolved, its folder's resolution cached briefly."""
    joined = re.sub("/+", "/", path if path.startswith("/") else os.path.join(os.getcwd(), path))
    return _real(joined.rstrip("/") or "/")


def _real(path: str) -> str:
    folder, _, name = path.rpartition("/")
    if not folder or name in (".", "..") or "/./" in folder + "/" or "/../" in folder + "/":
        return os.path.realpath(path)
    full = f"{recent(_real_folders, folder, os.path.realpath).rstrip('/')}/{name}"
    return os.path.realpath(full) if os.path.islink(full) else full


def recent(cache: dict[str, tuple[float, T]], key: str, compute: Callable[[str], T]) -> T:
    """`compute(key)`, remembered for a moment: a run opening thousands of files in one folder
    resolves that folder once, while a symlink or manifest changed since is seen within it."""
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and now - hit[0] < RECENT_SECONDS:
        return hit[1]
    value = compute(key)
    if len(cache) >= 4096:
        cache.clear()
    cache[key] = (now, value)
    return value


def readings(url: str | os.PathLike[str] | bytes) -> set[Location]:
    """Every location `url` may denote; fsspec chains (`a::b`) yield each link's."""
    text = os.fsdecode(url) if not isinstance(url, str) else url
    found: set[Location] = set()
    for link in text.split("::") if "::" in text else (text,):
        found |= _link_readings(link)
    return found


def _link_readings(text: str) -> set[Location]:
    scheme, rest = scheme_of(text)
    if scheme != "file" and scheme not in _known_protocols():
        # `ab:cd/x` is a relative path with a colon as much as a URL: read it both ways
        return _file_readings(text, {text}) | _remote_readings(scheme, rest)
    if scheme == "file":
        return _file_readings(text, _file_paths(text, rest))
    return _remote_readings(scheme, rest)


def _file_paths(text: str, rest: str) -> set[str]:
    if rest == text:  # a bare path
        return {rest}
    # `file://host/p`: a URL parser reads /p, fsspec reads host/p under the working
    # directory; `?` and `#` end the path for one and not the other. Take them all.
    paths = {rest, "/" + rest, "/" + rest.partition("/")[2]}
    return paths | {p.partition(c)[0] for p in paths for c in "?#"}


def _file_readings(text: str, paths: set[str]) -> set[Location]:
    found: set[Location] = set()
    for raw in paths:
        for decoded in _decodings(raw):
            for local in _local_readings(decoded):
                found.add(("file", components(local)))
    return found


def _remote_readings(scheme: str, rest: str) -> set[Location]:
    netloc, slash, tail = rest.partition("/")
    host = host_of(netloc)
    paths = {slash + tail} | {(slash + tail).partition(c)[0] for c in "?#"}
    found = {
        (scheme, (h.casefold(), *components(decoded)))
        for raw in paths for decoded in _decodings(raw) for h in _decodings(host)
    }
    # `bucket/../other/key`: a store that normalises the whole key lands in another bucket
    for raw in paths:
        for decoded in _decodings(raw):
            whole = components(host + decoded)
            if whole:
                found.add((scheme, whole))
    if scheme == "sftp" and any(is_this_machine(h) for h in _decodings(host)):
        # an SFTP server on this machine serves this machine's files: read the path as one
        found |= _file_readings(slash + tail, paths)
    return found


_this_machine: dict[str, bool] = {}


def is_this_machine(host: str) -> bool:
    """Whether `host` may name this machine: an address it resolves to is one a socket here can bind.

    Remembered for the process's life (a name lookup may cost a round trip); a host that
    later moves here is still caught by content (the fingerprint index), if not by path.
    """
    host = host.strip("[]")
    if not host:
        return False
    if host not in _this_machine:
        if len(_this_machine) >= 4096:
            _this_machine.clear()
        _this_machine[host] = _binds_locally(host)
    return _this_machine[host]


def _binds_locally(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return False
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address, 0))  # only an address of this machine's own interfaces binds
                return True
        except OSError:
            continue
    return False


def _known_protocols() -> frozenset[str]:
    try:
        from fsspec.registry import known_implementations, registry
    except ImportError:
        return frozenset()
    return frozenset(known_implementations) | frozenset(registry)


@dataclass(frozen=True)
class Glob:
    """One `policy.resident` entry, compiled; `text` is what the user wrote."""

    text: str
    forms: frozenset[Location]

    def matches(self, location: Location, contains: bool) -> bool:
        """Whether `location` matches the glob; with `contains`, also a folder that may hold a match."""
        scheme, parts = location
        return any(s == scheme and _could_match(p, parts, contains) and _overlaps(p, parts, contains)
                   for s, p in self.forms)


def _could_match(pattern: tuple[str, ...], parts: tuple[str, ...], contains: bool) -> bool:
    """A cheap test on the glob's literal head, before the full match: most paths fail here."""
    for i, want in enumerate(pattern):
        if _WILDCARD.search(want):
            return True
        if i == len(parts):
            return contains
        if parts[i] != want:
            return False
    return True


def compile_glob(text: str) -> Glob:
    """A resident glob: `file:///data/pii/**`, `/data/pii/**`, `oss://corp-pii/**`."""
    scheme, rest = scheme_of(text.strip())
    if not rest.strip("/"):
        raise ConfigError(f"policy.resident entry {text!r} names no path. Write e.g. \"file:///data/pii/**\".")
    if scheme != "file":
        netloc, slash, tail = rest.partition("/")
        forms = {(scheme, (h.casefold(), *_glob_parts(p)))
                 for h in _decodings(host_of(netloc)) for p in _decodings(slash + tail)}
        return Glob(text, frozenset(forms))
    path = os.path.expanduser(rest if rest == text.strip() else "/" + rest.lstrip("/"))
    if not path.startswith("/") and not path.startswith("**"):
        raise ConfigError(
            f"policy.resident entry {text!r} is a relative path. Write an absolute path or URL "
            "(e.g. \"/data/pii/**\"), or start it with ** to match anywhere."
        )
    forms: set[Location] = set()
    for decoded in _decodings(path):
        parts = _glob_parts(decoded)
        forms.add(("file", parts))
        forms.add(("file", _resolved_prefix(decoded, parts)))
    return Glob(text, frozenset(forms))


def _glob_parts(path: str) -> tuple[str, ...]:
    path = unicodedata.normalize("NFC", path)
    parts = [p for p in posixpath.normpath("/" + path.lstrip("/")).split("/") if p]
    return tuple(p.casefold() for p in parts)


def _resolved_prefix(path: str, parts: tuple[str, ...]) -> tuple[str, ...]:
    # If the resident folder is itself reached through a symlink, files opened by
    # their real path must still match: resolve the glob's literal head.
    literal = []
    for part in path.strip("/").split("/"):
        if _WILDCARD.search(part):
            break
        literal.append(part)
    if not literal:
        return parts
    try:
        real = os.path.realpath("/" + "/".join(literal))
    except (ValueError, OSError):
        return parts
    head = components(real)
    return head + parts[len(components("/".join(literal))):]


def _overlaps(pattern: tuple[str, ...], parts: tuple[str, ...], contains: bool) -> bool:
    """Whether `parts` matches `pattern`, lies inside a match, or (with `contains`) may hold one."""
    memo: dict[tuple[int, int], bool] = {}

    def step(i: int, j: int) -> bool:
        key = (i, j)
        if key in memo:
            return memo[key]
        if i == len(pattern):
            result = True  # the location is a match or lies inside one
        elif j == len(parts):
            result = contains or all(p == "**" for p in pattern[i:])
        elif pattern[i] == "**":
            result = step(i + 1, j) or step(i, j + 1)
        else:
            result = fnmatchcase(parts[j], pattern[i]) and step(i + 1, j + 1)
        memo[key] = result
        return result

    return step(0, 0)


def compile_globs(texts: Iterable[str]) -> tuple[Glob, ...]:
    """The config's resident globs, compiled once for a moment: a check of many files reuses them."""
    texts = tuple(texts)
    return recent(_compiled, repr(texts), lambda _: tuple(compile_glob(text) for text in texts))


def os_path_readings(path: str) -> set[Location]:
    """What the operating system opens for `path`: it decodes nothing, so only `..` and symlinks count."""
    return {("file", _file_components(reading)) for reading in _local_readings(path)}


def _file_components(path: str) -> tuple[str, ...]:
    # `path` is absolute and normalised: its folder's components are worth remembering
    folder, _, name = path.rpartition("/")
    head = recent(_folder_parts, folder, components) if folder else ()
    return (*head, unicodedata.normalize("NFC", name).casefold()) if name else head


def matching_glob(url: str, globs: Sequence[Glob], contains: bool = True) -> Glob | None:
    """The first glob that labels `url`, or None."""
    return first_match(readings(url), globs, contains)


def first_match(locations: set[Location], globs: Sequence[Glob], contains: bool) -> Glob | None:
    """The first of `globs` that matches any reading in `locations`, or None."""
    for glob in globs:
        if any(glob.matches(location, contains) for location in locations):
            return glob
    return None


def covers(prefix: str, url: str) -> bool:
    """Whether `url` is `prefix` or lies under it, literally (no wildcards in `prefix`)."""
    heads = readings(prefix)
    return any(
        scheme == s and parts[: len(head)] == head
        for scheme, parts in readings(url)
        for s, head in heads
    )


def site_for_url(url: str, config: Config) -> SiteConfig | None:
    """The site whose `storage` holds `url` (the longest such prefix), else the ssh site on its host."""
    locations = readings(url)
    best: tuple[int, SiteConfig] | None = None
    for site in config.sites.values():
        if not site.storage:
            continue
        for s, head in recent(_storage_readings, site.storage, lambda storage: frozenset(readings(storage))):
            if any(s == scheme and parts[: len(head)] == head for scheme, parts in locations):
                if best is None or len(head) > best[0]:
                    best = (len(head), site)
    if best:
        return best[1]
    hosts = {parts[0] for scheme, parts in locations if scheme == "sftp" and parts}
    for site in config.sites.values():
        if site.host and site.host.lower() in hosts:
            return site
    return None


def is_local(url: str) -> bool:
    """Whether every reading of `url` is a path on this machine (`file`)."""
    return all(scheme == "file" for scheme, _ in readings(url))


def redact(url: str) -> str:
    """`url` without a password in its user part, fit for logs and messages."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]+://)([^/@:]*):[^/@]*@", r"\1\2:***@", url)
