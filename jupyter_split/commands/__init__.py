"""The verbs shared by `%split VERB ...` and `jupyter-split VERB ...`.

Each verb is registered once, with its arguments, in a module of this package, and the
magic and the CLI use the same parser, so the two faces cannot drift apart. The parser of
every verb imports every module; a command that names its verb imports that verb's module
alone (`VERB_MODULES`), since imports are most of a short command's time.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from .options import arg, explain, number  # noqa: F401  (arg and number: the verbs' modules use them from here)


@dataclass
class Context:
    """What a verb may use: the user's namespace (notebook only) and where to print."""

    namespace: dict[str, Any] | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    notebook: bool = False

    def print(self, *parts: Any) -> None:
        """Print to where this verb's output goes."""
        print(*parts, file=self.out)

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        """Print `rows` under `header`, each column as wide as its widest cell."""
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
        for row in [header, *rows]:
            self.print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


@dataclass
class Verb:
    """A registered verb: its name, one-line help, function and arguments (as `arg` makes them)."""

    name: str
    help: str
    func: Callable[[Context, argparse.Namespace], int | None]
    arguments: list[tuple[tuple[Any, ...], dict[str, Any]]]


VERBS: dict[str, Verb] = {}

#: The module of this package that registers each verb, so that `jupyter-split logs RUN` imports
#: `runs` and not the sync engine, fsspec or the accelerator pollers. A verb missing here still
#: works (its command loads every module); a test checks this map against the modules.
VERB_MODULES = {
    "doctor": "doctor", "lease": "lease", "top": "top", "wandb": "wandb",
    "policy": "policy", "declassify": "policy", "audit": "policy",
    "sites": "runs", "runs": "runs", "attach": "runs", "logs": "runs", "cancel": "runs", "run": "runs",
    "push": "sync", "pull": "sync", "checkpoints": "sync", "session": "session", "agent": "agent",
}


def verb(name: str, help: str, *arguments: tuple[tuple[Any, ...], dict[str, Any]]):
    """Register the decorated function as verb `name`, with its help and arguments; both faces
    find it in `VERBS`. The function returns the exit status (None means 0)."""
    def register(func: Callable[[Context, argparse.Namespace], int | None]):
        VERBS[name] = Verb(name, help, func, list(arguments))
        return func
    return register


class ParseExit(Exception):
    """argparse wanted to exit (help or a usage error); `code` is its status."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviations (`--gpu` is not `--gpus`), whose errors carry their fix and
    are raised, never printed here: each face shows an error once, in its own way."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise ParseExit(2, explain(self, message, f"`{self.prog} --help`"))

    def exit(self, status: int = 0, message: str | None = None):  # noqa: A003 - argparse's name
        raise ParseExit(status, message or "")


def load_verbs() -> dict[str, Verb]:
    """Import every module of this package (each registers its verbs); returns the verbs."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f".{module.name}", __name__)
    return VERBS


def build_parser(prog: str, only: str | None = None) -> argparse.ArgumentParser:
    """A parser of every verb (each a subcommand) for `prog` (`%split` or `jupyter-split`), or of verb
    `only` where `VERB_MODULES` knows its module. Its errors and --help raise `ParseExit`; it never
    exits or prints an error itself."""
    if only in VERB_MODULES:
        importlib.import_module(f".{VERB_MODULES[only]}", __name__)
        verbs = [VERBS[only]]
    else:
        verbs = list(load_verbs().values())
    parser = _Parser(prog=prog, description="Run notebook cells on sites abroad and at home.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for v in verbs:
        p = sub.add_parser(v.name, help=v.help, description=v.help)
        for flags, options in v.arguments:
            p.add_argument(*flags, **options)
    return parser


def verb_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each verb's own parser, by name, from a parser `build_parser` made."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def parse(argv: list[str], prog: str) -> argparse.Namespace:
    """The verb and its arguments; `ParseExit` for help (status 0) or a usage error (2, with its fix)."""
    parser = build_parser(prog, argv[0] if argv else None)
    args, extra = parser.parse_known_args(argv)
    if extra:  # the verb's own parser knows its options: it names the one meant
        verb_parsers(parser)[args.verb].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Run a parsed verb; returns its exit status."""
    return VERBS[args.verb].func(ctx, args) or 0


def dispatch(argv: list[str], ctx: Context, prog: str = "jupyter-split") -> int:
    """Parse `argv` and run its verb; returns the exit status (a usage error: printed once, 2)."""
    try:
        args = parse(argv, prog)
    except ParseExit as exc:
        if exc.code:
            print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.code
    return run(args, ctx)
