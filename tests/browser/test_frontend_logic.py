"""The sidebar's TypeScript logic under jest, run from pytest so that CI runs it with everything else."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_split.protocol import RUN_STATES

from .conftest import EXTENSION_SRC


def test_every_state_style_has_a_colour_rule() -> None:
    css = (EXTENSION_SRC / "style" / "base.css").read_text()
    rules = dict(re.findall(r"\.jp-split-state-([a-z]+) \{\s*--jp-split-tone: (var\(--jp-[a-z0-9-]+\));", css))
    styles = {s.style for s in RUN_STATES}
    assert styles <= set(rules), f"badge styles without a rule in base.css: {styles - set(rules)}"
    assert len(set(rules[s] for s in styles)) == len(styles), "two styles share one colour"


@pytest.mark.slow
def test_jest_suite_passes() -> None:
    jlpm = shutil.which("jlpm", path=str(Path(sys.executable).parent)) or shutil.which("jlpm")
    assert jlpm and shutil.which("node"), "the frontend tests need node and jlpm (pip install jupyterlab)"
    if not (EXTENSION_SRC / "node_modules" / ".bin" / "jest").exists():
        install = subprocess.run([jlpm, "install"], cwd=EXTENSION_SRC, capture_output=True, text=True, timeout=600)
        assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    done = subprocess.run([jlpm, "test", "--ci"], cwd=EXTENSION_SRC, capture_output=True, text=True, timeout=600)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-5000:]
    counts = re.search(r"Tests:\s+(\d+) passed, (\d+) total", report)
    assert counts and counts.group(1) == counts.group(2) and int(counts.group(1)) > 0, report[-3000:]
