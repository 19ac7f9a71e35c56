"""Put jupyter_split on an SSH site with no package index: wheels over SFTP into a venv.

Layout in the site's workdir:
  env/venv/            the venv the runner uses; a .pth adds the site python's own
                       packages (torch, CUDA libraries) behind the venv's, so only
                       what is missing is installed
  env/wheels/          the wheels shipped from here (pip's own among them)
  env/installed.json   version and source fingerprint of what was installed
The site python's jupyter_split is used as is when it has this machine's released
version; a source checkout here always installs its exact code into the venv.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any, AsyncIterator

from .library import asyncssh

from . import wheelhouse
from .._version import __version__
from ..paths import data_dir
from .connection import SiteConnection, SshError

if TYPE_CHECKING:
    from ..executors.ssh import SshExecutor

# Runs under the site's python with nothing but the standard library; given a pip wheel
# as argv[1] it also reports the tags and markers pip would judge wheels by.
INSPECT = r"""
import json, os, platform, re, sys, sysconfig
from importlib import metadata
dists = {}
for d in metadata.distributions():
    name = d.metadata["Name"]
    if name:
        dists.setdefault(re.sub(r"[-_.]+", "-", name).lower(), d.version)
paths = sysconfig.get_paths()
std = {paths["stdlib"], paths["platstdlib"]}
keep = [p for p in sys.path if p and os.path.isdir(p) and p not in std and not p.endswith("lib-dynload")]
out = {"python": platform.python_version(), "executable": sys.executable, "prefix": sys.prefix,
       "purelib": paths["purelib"], "paths": keep, "dists": dists}
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
    from pip._vendor.packaging import markers, tags
    out["tags"] = [str(t) for t in tags.sys_tags()]
    out["markers"] = markers.default_environment()
print(json.dumps(out))
"""

PTH_NAME = "_jupyter_split_site.pth"
#: how long to wait for another process's install, and when its lock counts as abandoned
LOCK_WAIT, LOCK_STALE = 900.0, 1800.0
_LOCKS: "weakref.WeakKeyDictionary[SiteConnection, asyncio.Lock]" = weakref.WeakKeyDictionary()


def env_dir(workdir: str) -> str:
    """The folder in a site's workdir that holds the venv, the shipped wheels and the install marker."""
    return posixpath.join(workdir, "env")


def venv_python(workdir: str) -> str:
    """The python of the venv that bootstrap makes on the site under `workdir`."""
    return posixpath.join(env_dir(workdir), "venv", "bin", "python")


async def inspect(conn: SiteConnection, python: str, pip_wheel: str | None = None) -> dict[str, Any] | None:
    """What `python` on the site is and holds; None if it cannot run at all."""
    argv = [python, "-c", INSPECT] + ([pip_wheel] if pip_wheel else [])
    done = await conn.run(argv, timeout=120)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


async def _marker(conn: SiteConnection, workdir: str) -> dict[str, Any] | None:
    try:
        return json.loads(await conn.read_file(posixpath.join(env_dir(workdir), "installed.json")))
    except (FileNotFoundError, ValueError):
        return None


def _current(marker: dict[str, Any] | None) -> bool:
    return bool(marker) and marker.get("fingerprint") == wheelhouse.source_fingerprint()


def _base_is_enough(base: dict[str, Any] | None) -> bool:
    # A source checkout can differ from a release of the same version: only an installed release may match.
    return (base is not None and wheelhouse.source_root() is None
            and base["dists"].get("jupyter-split") == __version__)


async def doctor(executor: "SshExecutor", install: bool = True) -> dict[str, Any]:
    """The site's python, its version, jupyter_split there and here; installs if missing or different."""
    conn, workdir, python = executor.connection, executor.workdir, executor.base_python
    base = await inspect(conn, python)
    marker = await _marker(conn, workdir)
    report: dict[str, Any] = {
        "site": executor.site.name,
        "python": python,
        "python_version": base["python"] if base else None,
        "jupyter_split": base["dists"].get("jupyter-split") if base else None,
        "local_version": __version__,
        "venv": posixpath.dirname(posixpath.dirname(venv_python(workdir))),
        "venv_jupyter_split": marker.get("version") if marker else None,
        "venv_current": _current(marker),
        "installed_now": False,
    }
    if base is None:
        report["status"] = f"cannot run {python!r} on the site: set `python` under [sites.{executor.site.name}]"
        return report
    if install and not _base_is_enough(base) and not _current(marker):
        await ensure_installed(executor)
        report.update(installed_now=True, venv_jupyter_split=__version__, venv_current=True)
    report["runner_python"] = python if _base_is_enough(base) else venv_python(workdir)
    report["status"] = "ok" if (_base_is_enough(base) or report["venv_current"]) else "not installed"
    return report


async def ensure_installed(executor: "SshExecutor") -> str:
    """The python the runner should use on the site, installing jupyter_split first if needed."""
    conn = executor.connection
    lock = _LOCKS.setdefault(conn, asyncio.Lock())
    async with lock:
        if _current(await _marker(conn, executor.workdir)):
            return venv_python(executor.workdir)
        base = await inspect(conn, executor.base_python)
        if base is None:
            raise SshError(f"site {executor.site.name!r}: cannot run {executor.base_python!r} there. Set `python` "
                           f"under [sites.{executor.site.name}] to an interpreter that exists on {conn.endpoint.host}.")
        if _base_is_enough(base):
            return executor.base_python
        async with _site_lock(conn, env_dir(executor.workdir)):
            # Another notebook may have installed the same code while this one waited.
            if not _current(await _marker(conn, executor.workdir)):
                await _install(conn, executor.workdir, executor.base_python, base, executor.site.name)
        return venv_python(executor.workdir)


@contextlib.asynccontextmanager
async def _site_lock(conn: SiteConnection, folder: str) -> AsyncIterator[None]:
    """One install at a time per workdir, across processes and machines: an SFTP mkdir is atomic."""
    sftp = await conn.sftp()
    await sftp.makedirs(folder, exist_ok=True)
    path = posixpath.join(folder, "installing.lock")
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            await sftp.mkdir(path)
            break
        except asyncssh.SFTPError:
            try:
                age = time.time() - ((await sftp.stat(path)).mtime or 0)
            except asyncssh.SFTPNoSuchFile:
                continue  # released just now: try again
            if age > LOCK_STALE:
                with contextlib.suppress(asyncssh.SFTPError):  # another waiter may clear it first
                    await sftp.rmdir(path)  # its holder died mid-install
                continue
            if time.monotonic() > deadline:
                raise SshError(f"site {conn.site.name!r}: another install has held {path} for {age:.0f} s. If none "
                               "is running (no pip process on the site), remove that folder and try again.") from None
            await asyncio.sleep(1.0)
    try:
        yield
    finally:
        try:
            await sftp.rmdir(path)
        except (asyncssh.Error, OSError):
            pass  # the link dropped: the lock goes stale and the next install takes it


async def _upload(conn: SiteConnection, wheels: list[wheelhouse.Wheel], folder: str, always: bool = False) -> list[str]:
    """Copy wheels into `folder` (skipping ones already there); returns their file names there."""
    sftp = await conn.sftp()
    await sftp.makedirs(folder, exist_ok=True)
    for wheel in wheels:
        target = posixpath.join(folder, wheel.path.name)
        if always or not await sftp.exists(target) or (await sftp.stat(target)).size != wheel.path.stat().st_size:
            await conn.put(wheel.path, target + ".part")
            await sftp.posix_rename(target + ".part", target)
    return [wheel.path.name for wheel in wheels]


async def _install(conn: SiteConnection, workdir: str, python: str, base: dict[str, Any], site: str) -> None:
    cache = data_dir() / "wheels"
    folder = posixpath.join(env_dir(workdir), "wheels")
    venv = posixpath.dirname(posixpath.dirname(venv_python(workdir)))
    pip, project = await asyncio.to_thread(
        lambda: (wheelhouse.repack("pip", cache), wheelhouse.project_wheel(cache)))
    pip_remote = posixpath.join(folder, (await _upload(conn, [pip], folder))[0])
    if (await conn.run([venv_python(workdir), "-c", "pass"])).returncode != 0:
        await conn.check([python, "-m", "venv", "--without-pip", venv],
                         f"creating a venv with {python} -m venv (is the venv module installed there?)")
    env = await inspect(conn, venv_python(workdir), pip_remote)
    if env is None:
        raise SshError(f"site {site!r}: the new venv {venv} does not run; remove it and try again")
    inherit = [p for p in base["paths"] if p != env["purelib"]]
    # addsitedir, not bare paths: the site's own .pth files (editable installs, vendor hooks) must apply too.
    line = f"import site; list(map(site.addsitedir, {inherit!r}))\n"
    await conn.write_file(posixpath.join(env["purelib"], PTH_NAME), line.encode())
    env = await inspect(conn, venv_python(workdir), pip_remote)
    hidden = sorted(set(base["dists"]) - set(env["dists"] if env else ()))
    if env is None or hidden:
        raise SshError(f"site {site!r}: the venv {venv} does not see the packages of {python} ({', '.join(hidden[:5])}"
                       f"{'...' if len(hidden) > 5 else ''}); remove {venv} and run `%split doctor {site}` again")
    missing = [n for n in wheelhouse.closure(wheelhouse.project_requirements(), env) if n != "jupyter-split"]
    deps = await asyncio.to_thread(wheelhouse.dependency_wheels, missing, cache, set(env["tags"]), repr(site))
    # The first run on a site pays for this: say why it waits, on stderr (the cell's, in a notebook).
    print(f"[jupyter_split] site {site!r}: installing jupyter_split {__version__}"
          f"{f' and {len(deps)} missing packages' if deps else ''} into {venv} (no package index needed)",
          file=sys.stderr, flush=True)
    names = await _upload(conn, deps, folder) + await _upload(conn, [project], folder, always=True)
    # Run inside the wheel folder with ./NAME arguments: pip would read a `;` in a full path as a marker.
    pip_cmd = [venv_python(workdir), posixpath.join(pip_remote, "pip"), "install", "--no-index",
               "--find-links", ".", "--disable-pip-version-check", "--no-input", "--no-cache-dir",
               "--no-warn-script-location"]
    # No index exists on many leased clusters; make sure pip never looks for one.
    no_index = {"PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": "/dev/null"}
    if deps:
        await conn.check([*pip_cmd, *(f"./{n}" for n in names[:-1])], f"installing {', '.join(d.name for d in deps)}",
                         env=no_index, cwd=folder, timeout=900)
    await conn.check([*pip_cmd, "--no-deps", "--force-reinstall", f"./{names[-1]}"], "installing jupyter_split",
                     env=no_index, cwd=folder, timeout=300)
    await conn.check([venv_python(workdir), "-c", "import jupyter_split.runner"],
                     f"importing jupyter_split in {venv} after the install")
    marker = {"version": __version__, "fingerprint": wheelhouse.source_fingerprint(), "python": python,
              "dependencies": [f"{d.name}=={d.version}" for d in deps]}
    await conn.write_file(posixpath.join(env_dir(workdir), "installed.json"), json.dumps(marker).encode())

