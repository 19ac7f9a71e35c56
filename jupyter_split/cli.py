"""The `jupyter-split` command (so also `jupyter split`): the same verbs as `%split`."""
from __future__ import annotations

import gc
import sys

from .agent.forward import forward


def main(argv: list[str] | None = None) -> int:
    """Run `jupyter-split ARGV`; returns the exit status. A usage error, or an error the user
    can fix, is one line on stderr and status 2, never a traceback. Run as the command itself
    (no `argv`), it is handed to the agent where one runs (`jupyter-split agent start`)."""
    command = argv is None
    if command:
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
    finally:
        if command:
            _spare_the_exit()


def _spare_the_exit() -> None:
    # A command's objects are nearly all its imports' (modules, classes, the config's models), none of
    # them garbage, and the interpreter's last collections walk them all as it exits: 0.1 s, a fifth
    # of a no-op `push`. The young garbage of the command's own work is collected now, and the
    # collector leaves the rest to the end of the process.
    gc.collect(1)
    gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
