"""Wheels made on this machine, for sites that have no package index.

A site gets jupyter_split and whatever it lacks of its dependencies as wheels built
here: the project from its source tree (or repacked from its installation), each
dependency repacked from this environment's installed copy, and pip itself (so the
site needs no pip). A repacked binary wheel is only offered to a site whose Python
accepts its tag; anything else is an error that lists the packages and the fix.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import tomllib
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..errors import SplitError
from .._version import __version__

PROJECT = PACKAGE = "jupyter_split"
#: the package's folder (this module is in its ssh/ folder)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
_SKIP_IN_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


class WheelError(SplitError, RuntimeError):
    """A wheel a site needs cannot be made here; the message lists what and how to fix it."""


@dataclass(frozen=True)
class Wheel:
    """A wheel file made or found here, ready to send to a site."""

    name: str          # canonical project name
    version: str
    path: Path


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _write_wheel(target: Path, dist_info: str, files: dict[str, bytes]) -> Path:
    """A zip of `files` with a fresh RECORD; written to a temp name, then renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    record_name = f"{dist_info}/RECORD"
    lines = [f"{name},{_record_hash(data)},{len(data)}" for name, data in files.items()]
    lines.append(f"{record_name},,")
    temp = target.with_suffix(".part")
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(name, data)
        zf.writestr(record_name, "\n".join(lines) + "\n")
    temp.replace(target)
    return target


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name)


def source_root() -> Path | None:
    """The source checkout this package runs from, if it runs from one."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / PACKAGE / "__init__.py").is_file() else None


@functools.cache
def _package_files() -> dict[str, bytes]:
    """The package's files as this process first saw them: the fingerprint and the wheel agree."""
    files = {}
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files[path.relative_to(PACKAGE_DIR.parent).as_posix()] = path.read_bytes()
    return files


@functools.cache
def source_fingerprint() -> str:
    """A hash of the package's files: equal on two machines only if the code is equal."""
    digest = hashlib.sha256()
    for name, data in _package_files().items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def _project_metadata(root: Path) -> str:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lines = ["Metadata-Version: 2.1", f"Name: {PROJECT}", f"Version: {__version__}",
             f"Summary: {project.get('description', '')}",
             f"Requires-Python: {project.get('requires-python', '>=3.11')}"]
    lines += [f"Requires-Dist: {req}" for req in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def project_wheel(cache: Path) -> Wheel:
    """jupyter_split as a wheel: built from the source tree, else repacked from its installation."""
    fingerprint = source_fingerprint()
    dist_info = f"{PROJECT}-{__version__}.dist-info"
    target = cache / "project" / fingerprint[:16] / f"{PROJECT}-{__version__}-py3-none-any.whl"
    if not target.is_file():
        root = source_root()
        if root is not None:
            files = dict(_package_files())
            files[f"{dist_info}/METADATA"] = _project_metadata(root).encode()
            files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: jupyter_split\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            _write_wheel(target, dist_info, files)
        else:
            return repack(PROJECT, cache, target=target)
    return Wheel(PROJECT, __version__, target)


def _is_editable(dist: metadata.Distribution) -> bool:
    raw = dist.read_text("direct_url.json")
    return bool(raw and json.loads(raw).get("dir_info", {}).get("editable"))


def _wheel_tags(dist: metadata.Distribution) -> list[str]:
    text = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def repack(name: str, cache: Path, target: Path | None = None, accept: set[str] | None = None) -> Wheel:
    """Rebuild a wheel from this environment's installed copy of `name` (its RECORD lists the files)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise WheelError(f"{name} is not installed here, so no wheel of it can be made for the site") from None
    version = dist.version
    tags = _wheel_tags(dist)
    if not tags or dist.files is None or _is_editable(dist):
        raise WheelError(f"{name} {version} is installed here without wheel records (editable or from a system "
                         "package), so it cannot be repacked")
    if accept is not None and not accept.intersection(tags):
        raise WheelError(f"{name} {version} is built for {', '.join(tags)} here, which the site's Python does not accept")
    base = dist.locate_file("")
    files: dict[str, bytes] = {}
    for entry in dist.files:
        parts = entry.parts
        # Files outside site-packages (scripts, data) are regenerated or unneeded on the site.
        if ".." in parts or "__pycache__" in parts or entry.suffix == ".pyc":
            continue
        if parts[0].endswith(".dist-info") and parts[-1] in _SKIP_IN_DIST_INFO:
            continue
        path = Path(base) / entry
        if path.is_file():
            files[entry.as_posix()] = path.read_bytes()
    dist_info = next(p.split("/")[0] for p in files if p.split("/")[0].endswith(".dist-info"))
    tag = tags[0] if len(tags) == 1 else _compress(tags)
    target = target or cache / "deps" / f"{_norm(dist.metadata['Name'])}-{version}-{tag}.whl"
    if not target.is_file():
        _write_wheel(target, dist_info, files)
    return Wheel(canonicalize_name(dist.metadata["Name"]), version, target)


def _compress(tags: list[str]) -> str:
    split = [t.split("-") for t in tags]
    return "-".join(".".join(sorted({s[i] for s in split})) for i in range(3))


def closure(requirements: Iterable[str], site: dict[str, Any]) -> list[str]:
    """Names of the distributions the site lacks, following requirements through what it lacks.

    `site` is the remote inspection: `dists` (canonical name -> version) and `markers`.
    """
    have = site["dists"]
    env = dict(site["markers"], extra="")
    missing: list[str] = []
    queue = [Requirement(r) for r in requirements]
    while queue:
        req = queue.pop(0)
        if req.marker is not None and not Marker(str(req.marker)).evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if name in missing:
            continue
        if name in have and req.specifier.contains(have[name], prereleases=True):
            continue
        missing.append(name)
        try:
            queue.extend(Requirement(r) for r in (metadata.distribution(name).requires or []))
        except metadata.PackageNotFoundError:
            continue
    return missing


def project_requirements() -> list[str]:
    """jupyter_split's own dependencies: from the source tree's pyproject.toml, else the installed package's."""
    root = source_root()
    if root is not None:
        return list(tomllib.loads((root / "pyproject.toml").read_text())["project"].get("dependencies", []))
    return list(metadata.distribution(PROJECT).requires or [])


def extra_wheels(cache: Path) -> list[Path]:
    """Wheels the user dropped in by hand for sites whose Python differs from this one."""
    folder = cache / "extra"
    return sorted(folder.glob("*.whl")) if folder.is_dir() else []


def dependency_wheels(names: list[str], cache: Path, accept: set[str], site_label: str) -> list[Wheel]:
    """Repacked wheels for `names`; one error listing every package that cannot be made."""
    wheels, problems = [], []
    by_hand = {canonicalize_name(p.name.split("-")[0]): p for p in extra_wheels(cache)}
    for name in names:
        if name in by_hand:
            wheels.append(Wheel(name, by_hand[name].name.split("-")[1], by_hand[name]))
            continue
        try:
            wheels.append(repack(name, cache, accept=accept))
        except WheelError as exc:
            problems.append(str(exc))
    if problems:
        raise WheelError(
            f"site {site_label} lacks packages that cannot be shipped from here:\n  " + "\n  ".join(problems)
            + f"\nInstall them on the site with its own tools, or put wheels for the site's Python into "
            f"{cache / 'extra'} (e.g. `pip download --only-binary=:all: --python-version X.Y --platform TAG -d DIR PKG`)."
        )
    return wheels
