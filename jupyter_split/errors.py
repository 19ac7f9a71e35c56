"""The root of jupyter_split's errors, and the one map from an error to what each face shows.

Every error jupyter_split raises derives from `SplitError`. Its message says what went wrong and
how to fix it, so the faces show it as is: the CLI prints it (exit 2), the magics raise it as a
`UsageError` (no traceback), the server answers it with the class's HTTP status and reason. A
class keeps its builtin base too (`ConfigError` is a `ValueError`), so callers that catch those
still do.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from pydantic import ValidationError


class SplitError(Exception):
    """Root of jupyter_split's errors; the message names the thing and the fix."""

    #: the server's answer: HTTP status and reason phrase
    http_status = 500
    http_reason = "jupyter_split error"
    #: False where the error shows itself (a cell's own traceback), not as a one-line message
    as_message = True


class ExecutorError(SplitError, RuntimeError):
    """A site cannot run what was asked (not reachable, refused, misconfigured)."""

    http_status = 502
    http_reason = "site not reachable"


class OptionError(SplitError, ValueError):
    """Options that do not go together: the message names them and what to give instead."""

    http_status = 400
    http_reason = "invalid options"


def user_message(exc: BaseException) -> str | None:
    """What a face shows for an error a user can fix (its message), or None for the others (a bug,
    a cell's own failure), which keep their traceback. File-system errors count: they name the
    file, and the fix is the user's (space, permissions)."""
    if isinstance(exc, SplitError):
        return str(exc) if exc.as_message else None
    if isinstance(exc, OSError):
        return str(exc)
    return None


@contextlib.contextmanager
def user_errors(as_type: type[Exception]) -> Iterator[None]:
    """Turn the errors a user can fix (`user_message`) into `as_type` with just their message:
    shown as one clear line, never as a Python traceback."""
    try:
        yield
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        raise as_type(message) from None


def http_answer(exc: BaseException) -> tuple[int, str] | None:
    """(status, reason) of the server's answer to an error a user can fix, or None."""
    if isinstance(exc, SplitError) and exc.as_message:
        return exc.http_status, exc.http_reason
    return None


class DistributedError(ExecutorError):
    """A `--gpus`/`--nodes` request this site cannot serve; the message says what can."""


def nul_key(value: Any, key: str = "") -> str | None:
    """The dotted key of the first string (or table key) in `value` with a NUL in it."""
    if isinstance(value, str):
        return key if "\0" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, item in items:
        path = f"{key}.{name}" if key else str(name)
        found = path if "\0" in str(name) else nul_key(item, path)
        if found:
            return found
    return None


def explain_invalid(exc: ValidationError, source: str) -> str:
    """A config's validation errors as users read them: each key, what is wrong with it and the fix."""
    lines = [f"{source}: invalid config"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            lines.append(f"  unknown key `{key}`: remove it or fix its spelling (see the README's config reference)")
        elif kind == "missing":
            lines.append(f"  missing key `{key}`: add it")
        else:
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"  `{key}`: {message}")
    return "\n".join(lines)

