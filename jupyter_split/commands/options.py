"""The options of a cell, defined once for every face that runs one.

`%%remote_gpu` and `%%on` declare them with IPython's `magic_arguments` (so `%%on?` lists
them), `jupyter-split run` adds the ones that mean something for a file; all three read
them back into a `CellOptions` here.
"""
from __future__ import annotations

import argparse
import difflib
import math
import re
from typing import Any, Callable, Iterable

from ..bounds import out_of_range
from ..core.outcome import CellOptions


def arg(*flags: Any, **options: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One argument of a verb, as `add_argument` takes it."""
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


def variable_names(text: str) -> list[str]:
    """An argparse `type`: `a,b` -> ["a", "b"], each a Python name."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if not name.isidentifier():
            raise argparse.ArgumentTypeError(f"{name!r} is not a variable name")
    return names


def site_argument(required: bool) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The SITE positional: required by `%%on` and `jupyter-split run`, optional for `%%remote_gpu`."""
    if required:
        return arg("site", help="the site to run on (`%%split sites` lists them)")
    return arg("site", nargs="?", help="the site to run on (default: experiment.default_remote)")


#: the options of any run: a notebook cell's, or a file's (`jupyter-split run`)
RUN_OPTIONS = [
    arg("--gpus", type=number(int, 1), metavar="N",
        help="GPUs (processes) per node; more than 1 runs under torchrun"),
    arg("--nodes", type=number(int, 1), metavar="N", help="nodes for a distributed cell"),
    arg("--detach", action="store_true", help="return at once with the run id; the run outlives the notebook"),
    arg("--name", metavar="LABEL", help="a label (W&B job type)"),
    arg("--wandb", action="store_true", help="a W&B run around the cell (site, host, device, versions, code hash)"),
    arg("--timeout", type=number(float, 0, above=True), metavar="S", help="end the cell after S seconds"),
]

#: the options only a notebook cell has: its variables, and its session
NOTEBOOK_OPTIONS = [
    arg("--in", dest="inputs", type=variable_names, default=[], metavar="a,b", help="variables to send"),
    arg("--out", dest="outputs", type=variable_names, default=[], metavar="c,d", help="variables to bring back"),
    arg("--fresh", action="store_true", help="a new runner for this cell only (no session namespace)"),
]

CELL_OPTIONS = NOTEBOOK_OPTIONS + RUN_OPTIONS


def add_arguments(parser: argparse.ArgumentParser, arguments: Iterable[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
    """Add (flags, options) pairs, as `arg` makes them, to `parser`."""
    for flags, options in arguments:
        parser.add_argument(*flags, **options)


def cell_options(args: argparse.Namespace, **given: Any) -> CellOptions:
    """The parsed options as the core takes them (`given` adds or overrides fields)."""
    fields = {k: v for k, v in vars(args).items() if k in CellOptions.__dataclass_fields__}
    return CellOptions(**{**fields, **given})


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string `parser` takes (`-h`, `--gpus`...), for suggesting the one meant."""
    return [s for action in parser._actions for s in action.option_strings]


def explain(parser: argparse.ArgumentParser, message: str, help_hint: str) -> str:
    """argparse's `message` with its fix: the option or verb meant, and where the list is.

    argparse would take an abbreviation (`--gpu` for `--gpus`); the parsers here refuse them,
    so a near miss says which option was meant instead.
    """
    unknown = re.match(r"unrecognized arguments: (.*)", message)
    if unknown:
        wrong = [w.split("=")[0] for w in unknown.group(1).split() if w.startswith("-")]
        meant = {w: close[0] for w in wrong for close in [difflib.get_close_matches(w, option_strings(parser), 1, 0.6)]
                 if close}
        fix = " Did you mean " + ", ".join(f"{m} (not {w})" for w, m in meant.items()) + "?" if meant else ""
        return f"{message}.{fix} ({help_hint} lists the options)"
    choice = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice and choice.group(1) in ("VERB", "verb"):
        verbs = [v.strip(" '") for v in choice.group(3).split(",")]
        close = difflib.get_close_matches(choice.group(2), verbs, 1)
        fix = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown verb {choice.group(2)!r}.{fix} The verbs: {', '.join(verbs)} ({help_hint} describes them)"
    # a range error already says what to give
    return message if ": give " in message else f"{message} ({help_hint} lists the options)"
