"""Where a checkpoint lives and what the border says about it: a location's URL and options, its
file system, unpublishing an old one, and the guard's checks on save and on read (shared by
`api` and `dcp`)."""
from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any, Iterable, Iterator

import fsspec

from .writer import CheckpointError
from ..config import Config, load_config
from ..sync.manifest import read_manifest

DEFAULT_SHARD_SIZE = "512MiB"
#: checkpoints this process has loaded, with their labels: a later save names them as its
#: parents (lineage) and carries their labels, as a run's taint would
LOADED: dict[str, set[str]] = {}


def locate(spec: str, storage_options: dict[str, Any] | None = None, config: Config | None = None) -> tuple[str, dict[str, Any]]:
    """The URL and fsspec options for `spec`: `SITE:path`, a URL or a local path, as push and pull take them.

    A trailing `/@latest` becomes the newest published checkpoint under it. Without
    `storage_options`, a location inside a site's `storage` uses that site's options.
    """
    from ..names import check_location
    from ..residency.locations import site_for_url
    from ..sync.endpoints import endpoint
    from ..sync.published import resolve_latest

    config = config or load_config()
    if "://" in spec:
        check_location("checkpoint location", spec)  # SITE:path and local paths: in `endpoint`
        site = site_for_url(spec, config)
        url, options = spec, dict(site.storage_options) if site else {}
    else:
        found = endpoint(spec, config)
        url, options = found.url, dict(found.options)
    options.update(storage_options or {})
    return resolve_latest(url, options), options


def storage(url: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """The file system and root path of a checkpoint at `url`."""
    fs, root = fsspec.core.url_to_fs(url, **storage_options)
    return fs, root.rstrip("/")


def unpublish(fs: Any, root: str, url: str, overwrite: bool) -> None:
    """Remove the checkpoint published at `url` (manifest first), or refuse without `overwrite`."""
    # a reader must never see an old manifest over new shards: drop the manifest first
    old = read_manifest(fs, root)
    if old is None:
        return
    if not overwrite:
        raise CheckpointError(f"{url} already holds a published checkpoint; pass overwrite=True or save to a new URL (e.g. one per step)")
    fs.rm_file(posixpath.join(root, "manifest.json"))
    for entry in old.files:
        path = posixpath.join(root, entry.path)
        if fs.exists(path):
            fs.rm_file(path)


def guard_save(state: Any, url: str, labels: Any, nbytes: int, tree: Any = None, tensors: Iterable[Any] = ()) -> list[str]:
    """Refuse, before the first byte, labelled state bound for a site of another jurisdiction,
    and state whose plain values (`tree`: all but the tensors) or whose `tensors` of bytes and
    integers (which can hold text; floating-point ones are weights) hold personal information.

    Returns the labels the checkpoint carries: its objects', the run's, its location's and `labels`.
    """
    from .. import policy
    from ..residency.labels import collect
    from ..residency.locations import is_local, site_for_url

    config = load_config()
    origins = {code: f"checkpoint {src} loaded in this process" for src, codes in LOADED.items() for code in codes}
    origins.update({**collect(state), **{code: "ckpt.save(labels=...)" for code in labels}})
    site = site_for_url(url, config) or (policy.local_site(config) if is_local(url) else None)
    policy.check_transfer(url, origins, kind="checkpoint", dest=url, to_jurisdiction=site.jurisdiction if site else None,
                          to_site=site.name if site else None, nbytes=nbytes, config=config)
    if tree is not None:  # what goes as written (the JSON side file, the shards' bytes): the border's scan reads it first
        from ..residency.scan_archive import payload_scanned
        from ..transfer import PayloadReader
        from . import format as fmt

        document = json.dumps(tree, default=str).encode()
        texts = [t for t in tensors if t.numel() and payload_scanned(fmt.NAMES.get(t.dtype, ""))]
        policy.check_content(url, lambda: PayloadReader(_scanned_parts(document, texts)), kind="checkpoint",
                             to_site=site, dest=url, to_jurisdiction=site.jurisdiction if site else None,
                             nbytes=len(document) + sum(len(_APART) + fmt.nbytes(t) for t in texts), config=config)
    return sorted(set(origins) | policy.run_labels() | policy.labels_for_url(url, config))


_APART = b"\n\0\n"  # between the parts the scan reads: no built-in kind matches across it


def _scanned_parts(document: bytes, tensors: list[Any]) -> Iterator[Any]:
    """The JSON side file, then the bytes of each tensor (one at a time: a GPU tensor is copied here as it is read)."""
    import torch

    yield document
    for tensor in tensors:
        yield _APART
        yield tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy()


def guard_read(url: str, labels: list[str], nbytes: int, files: list[str] | None, config: Config | None = None) -> set[str]:
    """Reading a checkpoint copies it here: the guard decides, and a labelled one labels this run.

    Returns the labels the read data carries (the manifest's, its location's, the run's).
    """
    from .. import policy

    here = Path.cwd().as_uri()  # this process's own site
    found = policy.check_copy(url, here, labels, nbytes, url, files=files, config=config)
    LOADED[url] = found
    return found
