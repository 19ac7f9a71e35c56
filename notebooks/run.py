"""Execute the notebooks headless, on your config and data directory, and keep the executed copies.

    python notebooks/run.py                      # every notebook here, into demo-output/notebooks/
    python notebooks/run.py 01-quickstart.ipynb --output /tmp/out

(`python -m jupyter_split.demo` runs 02 in a fresh, separate data directory instead.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jupyter_split.demo import DemoError, execute

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python notebooks/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook files in this folder (default: all of them)")
    parser.add_argument("--output", type=Path, default=Path("demo-output") / "notebooks", help="where the executed copies go")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one cell may take")
    args = parser.parse_args(argv)
    paths = [HERE / name for name in args.names] or sorted(HERE.glob("[0-9][0-9]-*.ipynb"))
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        known = ", ".join(p.name for p in sorted(HERE.glob("*.ipynb")))
        print(f"run.py: no notebook {', '.join(missing)} in {HERE}; there are: {known}", file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        target = args.output / path.name
        try:
            execute(path, target, args.timeout)
            print(f"{path.name}: ok -> {target}")
        except DemoError as exc:
            failed += 1
            print(f"{path.name}: failed -> {target}\n{exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
