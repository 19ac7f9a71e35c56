"""The `jupyter-split` command (so also `jupyter split`): the same verbs as `%split`."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from . import commands
from .config import ConfigError
from .executors.base import ExecutorError
from .names import NameRefused
from .runs.index import UnknownRun
from .transfer import TransferError

#: errors a user can act on: shown as one clear message, never as a Python traceback
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ExecutorError, TransferError, UnknownRun, NameRefused,
                                                PermissionError, OSError)


@contextlib.contextmanager
def user_errors(as_type: type[Exception]) -> Iterator[None]:
    """Turn the errors a user can fix into `as_type` with just their message."""
    try:
        yield
    except USER_ERRORS as exc:
        raise as_type(str(exc)) from None


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
