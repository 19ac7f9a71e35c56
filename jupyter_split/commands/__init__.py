"""The verbs shared by `%split VERB ...` and `jupyter-split VERB ...`.

Each verb is registered once, with its arguments, in a module of this package;
every module of this package is imported to build the parser, and the magic and the
CLI use that same parser, so the two faces cannot drift apart.
"""
from __future__ import annotations

import argparse
import importlib
import math
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from ..bounds import out_of_range


@dataclass
class Context:
    """What a verb may use: the user's namespace (notebook only) and where to print."""

    namespace: dict[str, Any] | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    notebook: bool = False

    def print(self, *parts: Any) -> None:
        print(*parts, file=self.out)


@dataclass
class Verb:
    name: str
    help: str
    func: Callable[[Context, argparse.Namespace], int | None]
    arguments: list[tuple[tuple[Any, ...], dict[str, Any]]]


VERBS: dict[str, Verb] = {}


def arg(*flags: Any, **options: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return flags, options


def number(kind: type = int, low: float = 0, high: float | None = None, *, above: bool = False) -> Callable[[str], Any]:
    """An argparse `type` for a finite number of `kind` from `low` (exclusive with `above`) to `high`.

    Out of range is a usage error naming the option and the range (argparse prefixes the
    option), never a traceback from deep inside a verb.
    """
    whole = kind is int

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            fix = out_of_range(math.nan, low, high, above=above, whole=whole)
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if whole else 'a number'}: {fix}") from None
        fix = out_of_range(value, low, high, above=above, whole=whole)
        if fix:
            raise argparse.ArgumentTypeError(f"{text} is out of range: {fix}")
        return value

    parse.__name__ = kind.__name__
    return parse


def verb(name: str, help: str, *arguments: tuple[tuple[Any, ...], dict[str, Any]]):
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
    def exit(self, status: int = 0, message: str | None = None):  # noqa: A003 - argparse's name
        if message:
            self._print_message(message, sys.stderr)
        raise ParseExit(status, message or "")


def build_parser(prog: str) -> argparse.ArgumentParser:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f".{module.name}", __name__)
    parser = _Parser(prog=prog, description="Run notebook cells on sites abroad and at home.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for v in VERBS.values():
        p = sub.add_parser(v.name, help=v.help, description=v.help)
        for flags, options in v.arguments:
            p.add_argument(*flags, **options)
    return parser


def dispatch(argv: list[str], ctx: Context, prog: str = "jupyter-split") -> int:
    """Parse `argv` and run its verb; returns the exit status."""
    try:
        args = build_parser(prog).parse_args(argv)
    except ParseExit as exc:
        return exc.code
    return VERBS[args.verb].func(ctx, args) or 0
