"""The `jupyter-split` command (so also `jupyter split`): the same verbs as `%split`."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from . import commands
from .errors import user_message


@contextlib.contextmanager
def user_errors(as_type: type[Exception]) -> Iterator[None]:
    """Turn the errors a user can fix (`errors.user_message`) into `as_type` with just their message:
    shown as one clear line, never as a Python traceback."""
    try:
        yield
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        raise as_type(message) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with user_errors(SystemExit):
            return commands.dispatch(argv, commands.Context(out=sys.stdout))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"jupyter-split: {exc.code}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
