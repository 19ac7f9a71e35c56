"""The `jupyter-split` command (so also `jupyter split`): the same verbs as `%split`."""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Iterator

from . import commands
from .config import ConfigError
from .core.split import CellOptions
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


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if not name.isidentifier():
            raise argparse.ArgumentTypeError(f"{name!r} is not a variable name")
    return names


def add_cell_arguments(parser: argparse.ArgumentParser, site_required: bool) -> None:
    parser.add_argument("site", nargs=None if site_required else "?", help="the site (default: experiment.default_remote)")
    parser.add_argument("--in", dest="inputs", type=_names, default=[], metavar="a,b", help="variables to send")
    parser.add_argument("--out", dest="outputs", type=_names, default=[], metavar="c,d", help="variables to bring back")
    parser.add_argument("--gpus", type=commands.number(int, 1), help="GPUs (processes) per node; more than 1 runs under torchrun")
    parser.add_argument("--nodes", type=commands.number(int, 1), help="nodes for a distributed cell")
    parser.add_argument("--detach", action="store_true", help="return at once with the run id; the run outlives the notebook")
    parser.add_argument("--fresh", action="store_true", help="a new runner for this cell only (no session namespace)")
    parser.add_argument("--name", help="a label (W&B job type)")
    parser.add_argument("--wandb", action="store_true", help="a W&B run around the cell (site, host, device, versions, code hash)")
    parser.add_argument("--timeout", type=commands.number(float, 0, above=True), metavar="S", help="end the cell after S seconds")


def cell_options(argv: list[str], site_required: bool) -> CellOptions:
    parser = commands._Parser(prog="%%on" if site_required else "%%remote_gpu")
    add_cell_arguments(parser, site_required)
    args = parser.parse_args(argv)
    return CellOptions(**{k: v for k, v in vars(args).items() if k in CellOptions.__dataclass_fields__})


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
