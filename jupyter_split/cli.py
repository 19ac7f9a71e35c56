"""The `jupyter-split` command (so also `jupyter split`): the same verbs as `%split`."""
from __future__ import annotations

import sys

from .agent.forward import forward


def main(argv: list[str] | None = None) -> int:
    """Run `jupyter-split ARGV`; returns the exit status. A usage error, or an error the user
    can fix, is one line on stderr and status 2, never a traceback. Run as the command itself
    (no `argv`), it is handed to the agent where one runs (`jupyter-split agent start`)."""
    if argv is None:
        argv = sys.argv[1:]
        handed = forward(argv)
        if handed is not None:
            return handed
    # imported here: a command the agent runs pays for none of this
    from . import commands
    from .errors import user_errors

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
