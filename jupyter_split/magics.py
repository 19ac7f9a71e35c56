"""The IPython magics: `%%remote_gpu`, `%%on SITE` and `%split VERB`, thin over `core`.

Their options are declared with IPython's `magic_arguments`, from the one definition in
`commands/options.py`, so `%%on?` lists every option with its help.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, kwds, magic_arguments, parse_argstring

from . import commands
from .commands.options import CELL_OPTIONS, cell_options, explain, site_argument
from .commands.render import NotebookOutput, cell_view
from .core.outcome import RemoteError
from .core.split import get_split
from .errors import user_errors


def declare(name: str, arguments: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> Callable[[Callable], Callable]:
    """`@magic_arguments` and one `@argument` per (flags, options) pair, without abbreviations."""
    def decorate(func: Callable) -> Callable:
        for flags, options in reversed(arguments):  # decorators apply bottom-up
            func = argument(*flags, **options)(func)
        func = magic_arguments(name)(func)  # the help's usage line reads `%name ...`
        func.parser.allow_abbrev = False  # `--gpu 2` must not pass for `--gpus 2`
        return func
    return decorate


def parse(func: Callable, line: str) -> argparse.Namespace | None:
    """The magic's arguments, or None after `--help`; a usage error is one UsageError with its fix."""
    hint = f"`%{func.parser.prog}?`"
    if set(line.split()) & {"-h", "--help"}:
        print(textwrap.dedent(func.__doc__.removeprefix("::\n")).strip())  # the help without its reST marker
        return None
    try:
        return parse_argstring(func, line)
    except UsageError as exc:
        raise UsageError(explain(func.parser, str(exc), hint)) from None
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"{exc} in {line!r}") from None


def verbs_help() -> str:
    """Every verb of `%split` with its arguments: the epilog of `%split?`."""
    parsers = commands.verb_parsers(commands.build_parser("%split"))
    return "verbs:\n\n" + "\n".join(p.format_help() for p in parsers.values())


@magics_class
class SplitMagics(Magics):
    """The `%%remote_gpu`, `%%on` and `%split` magics (`%load_ext jupyter_split` registers them)."""

    @declare("%remote_gpu", [site_argument(required=False), *CELL_OPTIONS])
    @cell_magic("remote_gpu")
    def remote_gpu(self, line: str, cell: str):
        """Run the cell on a site (default: experiment.default_remote), as if it ran here."""
        return self._run(self.remote_gpu, line, cell)

    @declare("%on", [site_argument(required=True), *CELL_OPTIONS])
    @cell_magic("on")
    def on(self, line: str, cell: str):
        """Run the cell on any site, home included, as if it ran here."""
        return self._run(self.on, line, cell)

    @magic_arguments()
    @argument("verb", help="what to do (listed below)")
    @argument("arguments", nargs="*", help="the verb's arguments; `%%split VERB --help` lists them")
    @kwds(epilog=verbs_help())
    @line_magic("split")
    def split(self, line: str):
        """The verbs shared with the `jupyter-split` command: sites, runs, attach, logs, doctor..."""
        ctx = commands.Context(namespace=self.shell.user_ns, out=sys.stdout, notebook=True)
        try:
            args = commands.parse(_split_words(line), prog="%split")
        except commands.ParseExit as exc:
            if exc.code:
                raise UsageError(str(exc)) from None
            return
        with user_errors(UsageError):
            code = commands.run(args, ctx)
        if code:
            raise UsageError(f"%split {args.verb} did not succeed (the reason is above)")

    def _run(self, func: Callable, line: str, cell: str):
        args = parse(func, line)
        if args is None:
            return None
        with user_errors(UsageError):
            output = NotebookOutput()
            opts = cell_options(args, view=cell_view(self.shell, f"%{func.parser.prog} {line}".rstrip()))
            # a shutdown request sets exit_now (a kill ends all): either way the interrupt before it was not the user's
            outcome = get_split().execute(cell, opts, self.shell.user_ns, output,
                                          closing=lambda: bool(getattr(self.shell, "exit_now", False)))
        if outcome.state == "submitted":
            print(f"run {outcome.run_id} started on {outcome.site} (detached); `%split attach {outcome.run_id}` follows it")
            return None
        if not outcome.ok:
            raise RemoteError(outcome)
        return output.result


def _split_words(line: str) -> list[str]:
    from IPython.utils.process import arg_split

    try:
        return arg_split(line, strict=True)
    except ValueError as exc:
        raise UsageError(f"{exc} in {line!r}") from None


__all__ = ["SplitMagics"]
