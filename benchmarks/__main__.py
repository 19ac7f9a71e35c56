"""`python -m benchmarks NAME [args]` runs `benchmarks/bench_NAME.py`; with no NAME, lists them.

Each benchmark runs jupyter_split and its peers side by side in one script and prints
ratios; the figures are kept in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    if not argv or argv[0] not in names:
        print("usage: python -m benchmarks NAME [args]\n  NAME: " + ", ".join(names))
        return 2
    module = importlib.import_module(f"benchmarks.bench_{argv[0]}")
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
