"""The one rule for names a user gives: run names, checkpoint locations, paths below a site's storage.

Every face (magics, CLI, server, Python API) checks a name here before it is used, so a
character that some layer would read differently is refused at entry, with the character
and the fix, instead of reaching that layer:
- NUL ends a C string: as an environment variable (`--name` becomes `WANDB_JOB_TYPE`) it
  kills the process that sets it, the site's shared session among them;
- control characters (tab, CR, LF, ...) are dropped by URL parsers: `ssh://h/ck/a<TAB>b`
  opens `ssh://h/ck/ab`, another checkpoint;
- `\\` is a separator on Windows: a manifest refuses such paths when it is read back;
- in a URL, `#` and `?` start a fragment and a query: fsspec hands them to the backend as
  options (`TypeError ... 'url_fragment'` from sshfs).
"""
from __future__ import annotations

import re
import unicodedata

from .errors import SplitError

#: characters a URL parser reads as syntax rather than as part of a path
URL_SYNTAX = {"#": "starts a URL fragment", "?": "starts a URL query"}
# Control characters (Unicode category Cc: C0, DEL, C1) and the backslash; one regex
# search, so checking the names of a 10,000-file tree costs milliseconds.
_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
_BAD_IN_URL = re.compile(r"[\x00-\x1f\x7f-\x9f\\#?]")


class NameRefused(SplitError, ValueError):
    """A name or path with a character some layer would misread; the message names it and the fix."""

    http_status, http_reason = 400, "refused name"


def describe(char: str) -> str:
    """`'\\t' (U+0009, CHARACTER TABULATION)`: how an error shows a character."""
    name = unicodedata.name(char, "") or {"\0": "NUL", "\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN"}.get(
        char, "control character")
    return f"{char!r} (U+{ord(char):04X}, {name})"


def _why(char: str) -> str:
    if char == "\0":
        return "it ends a string in the operating system (an environment variable or a file name stops there)"
    if char == "\\":
        return "it separates paths on Windows, so tools disagree on what it names (a manifest listing it cannot be read back)"
    if char in URL_SYNTAX:
        return f"it {URL_SYNTAX[char]}, so fsspec would not read it as part of the path"
    return "it is a control character: URL parsers drop it, so the name would point somewhere else"


def check_name(kind: str, value: str, *, url: bool = False, shown: str | None = None) -> str:
    """`value` unchanged, or NameRefused naming `kind`, the first bad character, where and why.

    `url`: the value is (part of) a URL, where `#` and `?` are syntax too. `shown`: how to
    print the value (a URL with its password masked).
    """
    if not isinstance(value, str):
        raise NameRefused(f"{kind} must be a string, not {type(value).__name__}")
    found = (_BAD_IN_URL if url else _BAD).search(value)
    if found:
        index, char = found.start(), found.group()
        raise NameRefused(f"{kind} {value if shown is None else shown!r} has {describe(char)} at position {index}: "
                          f"{_why(char)}. Remove or replace that character (letters, digits, '-', '_', '.' and '/' "
                          "are safe everywhere).")
    return value


def check_site_path(kind: str, rel: str) -> str:
    """A path below a site's storage root (`SITE:path`): a clean name that stays below the root."""
    check_name(kind, rel, url=True)
    parts = rel.strip("/").split("/")
    if ".." in parts:
        raise NameRefused(f"{kind} {rel!r} has a '..' component: it would leave the site's storage. "
                          "Name the checkpoint by its path below the storage root, e.g. 'ckpts/step-300'.")
    return rel


def check_location(kind: str, spec: str) -> str:
    """A checkpoint location as a user writes it: a URL, `SITE:path` or a local path.

    A local path is the operating system's business (it refuses NUL itself); in a URL every
    character must reach the backend as written.
    """
    if "://" not in spec:
        return check_name(kind, spec) if "\0" in spec else spec
    from .residency.locations import redact  # residency imports the config; names stays import-light

    return check_name(kind, spec, url=True, shown=redact(spec))
