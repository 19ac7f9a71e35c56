"""The `jupyter-split` command (so also `jupyter split`): the same verbs as `%split`."""
from __future__ import annotations

import sys

from . import commands
from .errors import user_errors


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
