"""The scanner's regular expressions: RE2 (google-re2) when installed, else Python's `re` with the
same patterns and the same results, only slower; and the check `[policy.scan]` patterns get."""
from __future__ import annotations

import functools
import re as _re
from typing import Any

from ..errors import SplitError

try:  # a core dependency; the fallback keeps a broken install scanning, slowly
    import re2 as _re2
except ImportError:  # pragma: no cover - exercised where google-re2 has no wheel
    _re2 = None
_ANCHOR = _re2._Anchor.UNANCHORED if _re2 is not None and hasattr(_re2, "_Anchor") else None
_NO_MATCH = [(-1, -1)]


class PatternError(SplitError, ValueError):
    """A `[policy.scan]` pattern that the matcher cannot compile."""


class Matcher:
    """A compiled bytes regex; `search` gives the spans of its groups (group 0 first) or None."""

    def __init__(self, pattern: bytes) -> None:
        self._raw: Any = None
        if _re2 is None:
            try:
                self._re: Any = _re.compile(pattern)
            except _re.error as exc:
                raise PatternError(str(exc)) from None
            return
        options = _re2.Options()
        options.encoding = _re2.Options.Encoding.LATIN1  # byte semantics, as `re` has on bytes
        options.log_errors = False
        options.max_mem = 64 << 20  # the DFA's cache: the default is small enough to slow RE2 down
        try:
            self._re = _re2.compile(pattern, options)
        except _re2.error as exc:
            detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise PatternError(f"{detail} (the scanner uses RE2 syntax: no look-around, no backreferences)") from None
        # the binding's own call where it is there: the `search` wrapper costs more per match than the match
        self._raw = getattr(self._re, "_regexp", None) if _ANCHOR is not None else None
        if self._raw is not None:  # (a C-level partial: no Python frame per candidate)
            self.first = functools.partial(self._raw.Match, _ANCHOR)  # type: ignore[method-assign]

    def search(self, buf: bytes | memoryview, pos: int) -> list[tuple[int, int]] | None:
        """The spans of the first match at or after `pos` (a group that took no part: (-1, -1))."""
        spans = self.first(buf, pos, len(buf))
        return None if spans[0][0] < 0 else spans

    def first(self, buf: bytes | memoryview, pos: int, end: int) -> list[tuple[int, int]]:
        """`search` for the scanner's loop: no match is spans[0] == (-1, -1); `end` must be len(buf)."""
        if self._raw is not None:
            return self._raw.Match(_ANCHOR, buf, pos, end)
        match = self._re.search(buf, pos, end)
        return [match.span(group) for group in range(self._re.groups + 1)] if match else _NO_MATCH


def compile_pattern(pattern: bytes) -> Matcher:
    """Compile a bytes regex for the matcher in use: RE2 in Latin-1 mode, or `re` (the same results)."""
    return Matcher(pattern)


def check_pattern(name: str, pattern: str) -> None:
    """Raise ValueError (for the config loader) naming the pattern, what is wrong and the fix."""
    if not pattern:
        raise ValueError(f"pattern {name!r} is empty: give a regular expression, or remove the key")
    try:
        compiled = compile_pattern(pattern.encode())
    except PatternError as exc:
        raise ValueError(f"pattern {name!r} = {pattern!r} is not a valid regular expression: {exc}. "
                         "Fix the expression, or remove the key") from None
    if compiled.search(b"", 0) is not None:
        raise ValueError(f"pattern {name!r} = {pattern!r} matches the empty string, so it would match "
                         "everywhere: make it require at least one character (e.g. `+` instead of `*`)")


