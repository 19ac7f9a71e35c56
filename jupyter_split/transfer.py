"""Variables in and out of a runner (cloudpickle), and the version parity check before them."""
from __future__ import annotations

import io
import json
import pickle
import subprocess
from typing import Any, Iterable

import cloudpickle

# Runs under any interpreter, with or without jupyter_split installed; metadata only, so no
# heavy import (torch) is paid for a probe.
PROBE = r"""
import json, platform, socket, sys
from importlib import metadata
def v(name):
    try:
        return metadata.version(name)
    except Exception:
        return None
print(json.dumps({"python": platform.python_version(), "executable": sys.executable,
    "host": socket.gethostname(), "platform": platform.platform(),
    "cloudpickle": v("cloudpickle"), "torch": v("torch"), "jupyter_split": v("jupyter_split")}))
"""

class TransferError(RuntimeError):
    """A variable could not be shipped; the message names it and why."""


class VersionMismatch(TransferError):
    """Both sides would unpickle each other's bytes with different libraries."""


def probe_versions(python: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the probe with a local interpreter."""
    done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != 0:
        raise TransferError(f"cannot run {python!r} to read its versions: {done.stderr.strip() or done.returncode}")
    return json.loads(done.stdout)


def _release(version: str | None) -> str | None:
    return version.split("+", 1)[0] if version else None


def check_parity(local: dict[str, Any], remote: dict[str, Any], site: str) -> None:
    """Refuse to ship pickles between sides whose Python, cloudpickle or torch differ."""
    problems = []
    lpy, rpy = ".".join(local["python"].split(".")[:2]), ".".join(remote["python"].split(".")[:2])
    if lpy != rpy:
        problems.append(f"Python {lpy} here vs {rpy} on {site}")
    if local.get("cloudpickle") != remote.get("cloudpickle"):
        problems.append(f"cloudpickle {local.get('cloudpickle')} here vs {remote.get('cloudpickle')} on {site}")
    ltorch, rtorch = _release(local.get("torch")), _release(remote.get("torch"))
    if ltorch and rtorch and ltorch != rtorch:
        problems.append(f"torch {ltorch} here vs {rtorch} on {site}")
    if problems:
        raise VersionMismatch(
            f"cannot ship variables to or from site {site!r} ({remote.get('executable')}): "
            + "; ".join(problems)
            + ". Install the same versions on both sides (or point the site's `python` at a matching interpreter)."
        )


def pack(names: Iterable[str], namespace: dict[str, Any], where: str) -> bytes:
    """Pickle the named variables into one payload, naming any that is missing or unpicklable."""
    values = {}
    for name in names:
        if name not in namespace:
            raise TransferError(f"--in variable {name!r} is not defined {where}")
        values[name] = namespace[name]
    buffer = io.BytesIO()
    try:
        cloudpickle.dump(values, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        _name_unpicklable(values, where)
        raise
    return buffer.getvalue()


def _name_unpicklable(values: dict[str, Any], where: str) -> None:
    for name, value in values.items():
        try:
            cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TransferError(
                f"variable {name!r} ({type(value).__name__}) {where} cannot be pickled: {exc}. "
                "Send something it can be rebuilt from instead (a path, a state_dict, plain data)."
            ) from exc


def unpack(data: bytes) -> dict[str, Any]:
    return cloudpickle.loads(data)
