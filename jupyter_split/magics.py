"""The IPython magics: `%%remote_gpu`, `%%on SITE` and `%split VERB`, thin over `core`."""
from __future__ import annotations

import shlex
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from . import commands
from .cli import cell_options, user_errors
from .core.split import RemoteError, get_split
from .commands.render import NotebookOutput


@magics_class
class SplitMagics(Magics):
    @cell_magic("remote_gpu")
    def remote_gpu(self, line: str, cell: str):
        """%%remote_gpu [SITE] [--in a,b] [--out c,d] [--gpus N] [--nodes N] [--detach] [--fresh] [--name L] [--timeout S]"""
        return self._run(line, cell, site_required=False)

    @cell_magic("on")
    def on(self, line: str, cell: str):
        """%%on SITE [options as %%remote_gpu]: run the cell on any site, home included."""
        return self._run(line, cell, site_required=True)

    @line_magic("split")
    def split(self, line: str):
        """%split VERB: sites | runs | attach RUN | logs RUN | cancel RUN | doctor [SITE] | push SRC DEST |
        pull SRC DEST | policy | declassify ITEM | audit | wandb. `%split --help` lists them all."""
        ctx = commands.Context(namespace=self.shell.user_ns, out=sys.stdout, notebook=True)
        with user_errors(UsageError):
            code = commands.dispatch(shlex.split(line), ctx, prog="%split")
        if code:
            raise UsageError(f"%split {line.split()[0] if line.split() else ''} failed (status {code})")

    def _run(self, line: str, cell: str, site_required: bool):
        with user_errors(UsageError):
            try:
                opts = cell_options(shlex.split(line), site_required)
            except commands.ParseExit as exc:
                if exc.code:
                    raise UsageError(str(exc) or "bad options") from None
                return None
            output = NotebookOutput()
            outcome = get_split().execute(cell, opts, self.shell.user_ns, output)
        if outcome.state == "submitted":
            print(f"run {outcome.run_id} started on {outcome.site} (detached); `%split attach {outcome.run_id}` follows it")
            return None
        if not outcome.ok:
            raise RemoteError(outcome)
        return output.result


__all__ = ["SplitMagics"]
