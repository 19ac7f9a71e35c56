"""The border guard: every transfer between sites asks here before its first byte moves.

Labelled data may go only to a site of its own jurisdiction, unless the item was
declassified (`declassify`) or is on the config's `policy.allow_export` list. Every
attempt that crosses a border (or would send labelled data out of it) is written to
the audit log, allowed or refused.
"""
from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable, Iterable, Mapping

from ..errors import SplitError
from ..config import Config, ConfigError, SiteConfig, load_config
from .audit import append_record, audit, declassified_path, dry_running, read_records, who
from .labels import (
    collect, declassified, jurisdiction_code, label_origins, mark_declassified, nbytes as size_of, variable_origins,
)
from .locations import (compile_glob, compile_globs, covers, first_match, is_local, matching_glob, os_path_readings,
                        readings, redact, site_for_url)
from .border import judge
from .pins import Source
from .fingerprints import resident_index
from .produced import produced_index
from .taint import describe_state, local_site, run_label_origins, taint_run

DECLASSIFIED_ENV = "JUPYTER_SPLIT_DECLASSIFIED"
# One environment string may not pass 128 KiB (Linux), or the run's own subprocesses fail to start.
_ENV_BUDGET = 64 * 1024


@dataclass(frozen=True)
class Refusal:
    """One item the guard refused: what it is, its labels and where each came from, and where it was going."""

    kind: str
    item: str
    labels: dict[str, str]
    dest: str | None
    to_site: str | None
    to_jurisdiction: str | None

    def explain(self) -> str:
        """The refusal in words: the item, the destination, and each label that may not go there and why."""
        site = f"site {self.to_site!r}" if self.to_site else "no configured site"
        where = f"{self.dest} ({site}, jurisdiction {self.to_jurisdiction or 'unknown'})" if self.dest else \
            f"{site} (jurisdiction {self.to_jurisdiction or 'unknown'})"
        action = "copy" if self.kind == "copy" else f"send {self.kind}"
        lines = [f"refused to {action} {self.item!r} to {where}."]
        for code, origin in sorted(self.labels.items()):
            if code != self.to_jurisdiction:
                lines.append(f"  It carries residency label {code}, from: {origin}. {code} data must stay in {code}.")
        if not self.to_jurisdiction:
            lines.append("  The destination lies under no site's `storage`, so its jurisdiction is unknown: "
                         "add a site whose storage covers it.")
        return "\n".join(lines)


class ResidencyError(SplitError, PermissionError):
    """A transfer the residency policy refused; nothing was sent."""

    http_status, http_reason = 403, "refused by the residency policy"

    def __init__(self, refusals: list[Refusal]):
        self.refusals = refusals
        first = refusals[0]
        self.item, self.labels, self.dest = first.item, set(first.labels), first.dest
        self.to_site, self.to_jurisdiction = first.to_site, first.to_jurisdiction
        items = " ".join(_shell_word(r.item) for r in refusals)
        super().__init__(
            "Residency: " + "\n".join(r.explain() for r in refusals).replace("\nrefused", "\nAlso refused")
            + "\nNothing was sent. If this export was approved, declassify it and retry:\n"
            + f"  %split declassify {items} --reason \"<approval reference>\"\n"
            + "  (or `jupyter-split declassify ...`, or jupyter_split.policy.declassify(item, reason)),\n"
            + "  or list it under policy.allow_export in the config."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.refusals,)  # rebuilt whole when it crosses a process boundary


def _shell_word(text: str) -> str:
    return text if text and all(c.isalnum() or c in "/:._-~%@+=" for c in text) else repr(text)


def approval_for(targets: Iterable[str], config: Config) -> str | None:
    """Why these items may leave despite their labels: a declassification or an allowlist entry."""
    targets = [t for t in targets if t]
    for record in reversed([*_passed_on(), *read_records(declassified_path(config))]):
        stored = [str(record.get(key)) for key in ("item", "location") if record.get(key)]
        if any(s == t or covers(s, t) for s in stored for t in targets):
            return f"declassified by {record.get('user')} at {record.get('time')}: {record.get('reason')}"
    for pattern in config.policy.allow_export:
        if any(fnmatchcase(t, pattern) for t in targets) or _glob_allows(pattern, targets):
            return f"policy.allow_export lists {pattern!r}"
    return None


def runner_env(config: Config) -> dict[str, str]:
    """For a runner's environment: the declassifications made here, since a runner on another
    machine keeps its own register (and so would refuse what was approved here)."""
    records: list[dict[str, Any]] = []
    size = 0
    for record in reversed(declassifications(config)):  # newest first, within what an environment holds
        kept = {key: record.get(key) for key in ("item", "location", "reason", "user", "time")}
        size += len(json.dumps(kept)) + 2
        if size > _ENV_BUDGET:
            break
        records.append(kept)
    return {DECLASSIFIED_ENV: json.dumps(records[::-1])} if records else {}


def _passed_on() -> list[dict[str, Any]]:
    try:
        records = json.loads(os.environ.get(DECLASSIFIED_ENV) or "[]")
    except ValueError:
        return []
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def _glob_allows(pattern: str, targets: list[str]) -> bool:
    try:
        glob = compile_glob(pattern)
    except ConfigError:  # a plain item name, matched by fnmatch above
        return False
    return any(matching_glob(t, [glob], contains=False) for t in targets)


def _decide(
    config: Config, *, kind: str, item: str, labels: Mapping[str, str], src: str | None, dest: str | None,
    from_site: SiteConfig | None, to_site: SiteConfig | None, to_jurisdiction: str | None,
    nbytes: int | None, approval_targets: Iterable[str], approval: str | None = None,
    findings: list[dict[str, Any]] | None = None,
) -> Refusal | None:
    """Allow or refuse one item, auditing every cross-border attempt."""
    from_j = from_site.jurisdiction if from_site else None
    blocking = {code: why for code, why in labels.items() if code != to_jurisdiction}
    if not blocking and from_j == to_jurisdiction:
        return None
    approval = approval or (approval_for(approval_targets, config) if blocking else None)
    refused = bool(blocking) and approval is None
    reason = approval or ("no residency label" if not blocking else
                          "; ".join(f"{code} from {why}" for code, why in sorted(blocking.items())))
    audit(
        config, kind=kind, item=item, src=redact(src) if src else None, dest=redact(dest) if dest else None, bytes=nbytes,
        from_site=from_site.name if from_site else None, from_jurisdiction=from_j,
        to_site=to_site.name if to_site else None, to_jurisdiction=to_jurisdiction,
        labels=sorted(labels), decision="refused" if refused else "allowed", reason=reason,
        run_id=describe_state().get("run_id"), **({"findings": findings[:100]} if findings else {}),
    )
    if not refused:
        return None
    return Refusal(kind, item, dict(labels), redact(dest) if dest else None, to_site.name if to_site else None, to_jurisdiction)


def _given(labels: Mapping[str, str] | Iterable[str] | None, origin: str) -> dict[str, str]:
    if not labels:
        return {}
    if isinstance(labels, Mapping):
        return {jurisdiction_code(code): str(why) for code, why in labels.items()}
    return {jurisdiction_code(code): origin for code in labels}


def _add(origins: dict[str, str], more: Mapping[str, str]) -> None:
    """Merge label origins, keeping every distinct reason: a refusal should name them all."""
    for code, why in more.items():
        if code not in origins:
            origins[code] = why
        elif why not in origins[code]:
            origins[code] += f"; and {why}"


def _site_of(url: str, config: Config) -> SiteConfig | None:
    return site_for_url(url, config) or (local_site(config) if is_local(url) else None)


def url_label_origins(url: str, config: Config | None = None, contains: bool = True) -> dict[str, str]:
    """The labels a location carries from `policy.resident` (with the glob that gave each) and
    from what tainted runs wrote there."""
    return path_labeller(config or load_config(), contains=contains)(url)


def path_labeller(config: Config, *, contains: bool = False, os_paths: bool = False) -> Callable[[str], dict[str, str]]:
    """`url_label_origins` for many locations: the globs and the produced register read once.

    With `os_paths`, each location is a path this machine opens as it is (no URL decoding),
    as for the files of a local copy.
    """
    globs = compile_globs(config.policy.resident)
    produced = produced_index(config)
    home = config.home.jurisdiction

    def origins(url: str, contains: bool = contains) -> dict[str, str]:
        locations = os_path_readings(url) if os_paths else readings(url)
        glob, how = first_match(locations, globs, False), "matches"
        if glob is None and contains:
            glob, how = first_match(locations, globs, True), "may hold locations matching"
        found = {home: f"{redact(url)} {how} policy.resident {glob.text!r} ({config.source})"} if glob else {}
        _add(found, produced.origins(url, contains, locations))
        return found

    return origins


def labels_for_url(url: str, config: Config | None = None) -> set[str]:
    """Labels of a location: it matches, lies inside, or may contain a resident location."""
    return set(url_label_origins(url, config))


def check_copy(
    src_url: str, dest_url: str, labels: Mapping[str, str] | Iterable[str] | None, nbytes: int | None,
    item: str, *, files: Iterable[str] | None = None, source: Source | None = None,
    config: Config | None = None,
) -> set[str]:
    """Refuse (raise ResidencyError) a copy of labelled data to a site of another jurisdiction.

    `labels` are the source manifest's; the source's own location, each of `files` and the
    current run's taint add theirs. `files` are paths relative to `src_url` (or URLs), or,
    with `source` (how to open and hash them), `SourceFile`s: then each is judged by what
    it is (`border.judge`: symlinks resolved, hard links, bind mounts and copies of resident
    files found, and bound abroad, its content scanned), and local ones are pinned for the
    copy's reader. Without `files` a folder that may hold a resident location counts as resident.
    Returns every label the copy carries: the destination's manifest should list them.
    """
    config = config or load_config()
    origins = _given(labels, f"the manifest of {redact(src_url)}")
    file_list = list(files) if files is not None else None
    _add(origins, url_label_origins(src_url, config, contains=file_list is None))
    to_site = _site_of(dest_url, config)
    from_site = _site_of(src_url, config)
    to_j = to_site.jurisdiction if to_site else None
    findings: list[dict[str, Any]] = []
    if source is not None and file_list is not None:
        verdict = judge(source, file_list, config, resident_index(config),
                        path_labeller(config, os_paths=source.here), scanner_for(config, from_site, to_site))
        _add(origins, verdict.origins)
        findings = verdict.findings
    else:
        from_files: dict[str, str] = {}
        label = path_labeller(config)
        for name in file_list or ():
            url = name if "://" in name or name.startswith("/") else posixpath.join(src_url.rstrip("/"), name)
            for code, why in label(url).items():
                from_files.setdefault(code, why)  # the first such file is reason enough
        _add(origins, from_files)
    _add(origins, run_label_origins())
    refusal = _decide(
        config, kind="copy", item=item, labels=origins, src=src_url, dest=dest_url,
        from_site=from_site, to_site=to_site, to_jurisdiction=to_j,
        nbytes=nbytes, approval_targets=(item, src_url), findings=findings,
    )
    if refusal:
        raise ResidencyError([refusal])
    if not dry_running():  # a question taints nothing
        taint_run(origins)  # a run that pulls labelled data holds it now
    return set(origins)


def scanner_for(config: Config, from_site: SiteConfig | None, to_site: SiteConfig | None, *,
                to_jurisdiction: str | None = None) -> Any | None:
    """The content scanner for data going from `from_site` to `to_site` (or to `to_jurisdiction`,
    e.g. a W&B server's), or None where no border is crossed or `[policy.scan]` turns it off.

    Scanned: anything bound for a jurisdiction other than home (or an unknown one) from
    another jurisdiction. Data coming home, or staying where it is, is not scanned.
    """
    from_j = from_site.jurisdiction if from_site else None
    to_j = to_jurisdiction or (to_site.jurisdiction if to_site else None)
    if to_j is not None and (to_j == from_j or to_j == config.home.jurisdiction):
        return None
    from .scan import Scanner  # the matcher's patterns are compiled only where something is scanned

    return Scanner.for_site(config.policy, to_site.name if to_site else None)


def check_content(item: str, read: Callable[[], Any], *, kind: str, to_site: SiteConfig | None,
                  to_jurisdiction: str | None, dest: str | None = None, nbytes: int | None = None,
                  approval: str | None = None, config: Config | None = None) -> None:
    """Scan bytes bound abroad that are no file of a copy (a variable's pickled bytes, a W&B run
    file) and refuse them, audited, if they hold personal information. `read()` opens them."""
    config = config or load_config()
    from_site = local_site(config)
    scanner = scanner_for(config, from_site, to_site, to_jurisdiction=to_jurisdiction)
    if scanner is None:
        return
    result = _scan_content(scanner, read, item, nbytes)
    if result.clean:
        return
    reasons = [f"the content scan found {finding.describe()}" for finding in result.findings]
    reasons += [u.describe() for u in result.unscannable]
    findings = [finding.record(item) for finding in result.findings]
    refusal = _decide(
        config, kind=kind, item=item, labels={config.home.jurisdiction: "; ".join(reasons)}, src=None, dest=dest,
        from_site=from_site, to_site=to_site, to_jurisdiction=to_jurisdiction or (to_site.jurisdiction if to_site else None),
        nbytes=nbytes, approval_targets=(item,), approval=approval, findings=findings,
    )
    if refusal:
        raise ResidencyError([refusal])


def _scan_content(scanner: Any, read: Callable[[], Any], item: str, nbytes: int | None) -> Any:
    with read() as handle:
        return scanner.scan_file(handle, where=item, size=nbytes)


def check_variables_content(objects: Mapping[str, Any], payload: Any, dest_site: SiteConfig, *,
                            pack: Callable[[list[str]], Any], config: Config | None = None) -> None:
    """The content scan of `--in` variables' pickled bytes (`payload`, with `.reader()` and
    `len`) bound for `dest_site`. Where it finds something, each variable is pickled alone
    (`pack([name])`) so the refusal names the ones that hold it; the others may go."""
    config = config or load_config()
    scanner = scanner_for(config, local_site(config), dest_site)
    if scanner is None or _scan_content(scanner, payload.reader, "the pickled --in variables", len(payload)).clean:
        return
    refusals: list[Refusal] = []
    for name, obj in objects.items():
        alone = pack([name])
        try:
            check_content(name, alone.reader, kind="variable", to_site=dest_site, to_jurisdiction=dest_site.jurisdiction,
                          nbytes=len(alone), approval=declassified(obj), config=config)
        except ResidencyError as exc:
            refusals += exc.refusals
    if refusals:
        raise ResidencyError(refusals)


def check_objects(names_to_objects: Mapping[str, Any], dest_site: str | SiteConfig, *, config: Config | None = None) -> None:
    """Refuse `--in` variables that carry (or hold) a label foreign to `dest_site`; all are checked first."""
    config = config or load_config()
    to_site = dest_site if isinstance(dest_site, SiteConfig) else config.site(dest_site)
    from_site = local_site(config)
    taint = run_label_origins()
    refusals = []
    for name, obj in names_to_objects.items():
        approval = declassified(obj)
        origins = {**label_origins(obj), **collect(obj)} if approval else variable_origins(name, obj)
        _add(origins, taint)
        refusal = _decide(
            config, kind="variable", item=name, labels=origins, src=None, dest=None,
            from_site=from_site, to_site=to_site, to_jurisdiction=to_site.jurisdiction,
            nbytes=size_of(obj), approval_targets=(name,), approval=approval,
        )
        if refusal:
            refusals.append(refusal)
    if refusals:
        raise ResidencyError(refusals)


def check_transfer(
    item: str, labels: Mapping[str, str] | Iterable[str] | None, *, kind: str, dest: str,
    to_jurisdiction: str | None, to_site: str | None = None, src: str | None = None,
    nbytes: int | None = None, config: Config | None = None,
) -> None:
    """The guard for other channels (e.g. a W&B artifact bound for a server in `to_jurisdiction`)."""
    config = config or load_config()
    origins = _given(labels, f"the labels of {item}")
    _add(origins, run_label_origins())
    refusal = _decide(
        config, kind=kind, item=item, labels=origins, src=src, dest=dest,
        from_site=local_site(config), to_site=config.site(to_site) if to_site else None,
        to_jurisdiction=jurisdiction_code(to_jurisdiction) if to_jurisdiction else None,
        nbytes=nbytes, approval_targets=(item, src or ""),
    )
    if refusal:
        raise ResidencyError([refusal])


def declassify(item: Any, reason: str, user: str | None = None, *, name: str | None = None,
               config: Config | None = None) -> dict[str, Any]:
    """Approve the export of `item` (a location, an item name, or a Python object), audited."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("declassify needs a reason: who approved this export, and the approval's reference.")
    config = config or load_config()
    stamp = who()
    user = user or stamp["user"]
    if isinstance(item, str):
        if not item.strip():
            raise ValueError("declassify needs an item: a path, URL or item name.")
        location = os.path.abspath(os.path.expanduser(item)) if os.path.exists(os.path.expanduser(item)) else None
        append_record(declassified_path(config), {**stamp, "user": user, "item": redact(item), "location": location,
                                                  "reason": reason.strip()})  # a URL's password is never stored
        labels = sorted(labels_for_url(item, config))
        shown = redact(item)
    else:
        mark_declassified(item, f"declassified by {user}: {reason.strip()}")
        labels = sorted(label_origins(item))
        shown = name or f"<{type(item).__name__} object>"
    return audit(config, kind="declassify", item=shown, labels=labels, decision="declassified",
                 reason=reason.strip(), user=user)


def declassifications(config: Config | None = None) -> list[dict[str, Any]]:
    """The recorded declassifications of locations and item names, oldest first."""
    return list(read_records(declassified_path(config or load_config())))
