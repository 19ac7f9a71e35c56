"""`python -m jupyter_split.runner`: start a runner (see runner.main)."""
import sys

from .runner import main

sys.exit(main())
