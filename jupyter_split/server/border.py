"""The border pane's REST: the residency policy in force, the audit log's recent decisions with their
counts, and the declassify action a refusal offers.

GET border reads the audit log only when its size or time changed since the last answer to the same
query (an unchanged poll stats one file). Nothing personal is answered: the audit log holds masked
forms of what the content scan found (and hashes, which stay off the page: a hash of a short number
gives the number back to whoever tries them all), and URLs with their passwords masked.
"""
from __future__ import annotations

import re
import weakref
from datetime import datetime, timezone
from typing import Any

import tornado.web

from .. import core, policy
from ..config import Config
from ..residency.audit import DECISIONS
from ..residency.locations import redact
from . import bodies
from .base import Answers, SplitHandler

#: the most audit records one answer holds (the newest)
ENTRIES_MAX = 1000
#: what of an audit record the pane shows; anything else a record holds stays off the page
ENTRY_FIELDS = ("time", "ts", "user", "kind", "item", "src", "dest", "bytes", "from_site", "from_jurisdiction",
                "to_site", "to_jurisdiction", "labels", "decision", "reason", "run_id")
FINDING_FIELDS = ("file", "kind", "where", "offset", "masked")

_ANSWERS = Answers()  # by filters: the last answer, its config and the audit log's stat it was built at


class BorderHandler(SplitHandler):
    """GET /jupyter-split/border?decision=&kind=&site=&since=&today=&limit=: the policy and the audit log's news."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answers {policy, entries, counts, today, kinds, total}: the policy in force (`policy_view`), the
        newest `limit` (50) audit records that pass the filters, newest first, how many passed (`total`), per
        decision how many pass the other filters (`counts`) and how many of those since today began
        (`today`: from the time `today` names, the page's own midnight, else midnight UTC), and the kinds of
        transfer the log holds under the site and date filters (`kinds`: the kind filter's choices). 400 for
        a filter that cannot be read."""
        decision = self.get_query_argument("decision", None)
        if decision is not None and decision not in DECISIONS:
            raise tornado.web.HTTPError(400, f"query argument decision={decision[:40]!r} is not one of "
                                             f"{', '.join(DECISIONS)}")
        kind = self.get_query_argument("kind", None)
        if kind is not None and not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", kind):
            raise tornado.web.HTTPError(400, f"query argument kind={kind[:40]!r} is not a kind of transfer "
                                             "(e.g. copy, variable, declassify)")
        since, today = self._date_arg("since"), self._date_arg("today")
        filters = (decision, kind, self.site_arg(), since, self.int_arg("limit", 50, low=1, high=ENTRIES_MAX))
        try:
            start = day_start(today)
            answer = await self.call(border_answer, None, *filters, start)
        except ValueError as exc:  # a `since` or `today` that is no date; the message shows how to write one
            raise tornado.web.HTTPError(400, f"query argument {str(exc).removeprefix('--')}") from None
        self.send_answer(answer)

    def _date_arg(self, name: str) -> str | None:
        value = self.get_query_argument(name, None)
        if value is not None and len(value) > 40:
            raise tornado.web.HTTPError(400, f"query argument {name} is too long for a date: write e.g. 2026-11-28")
        return value


class DeclassifyHandler(SplitHandler):
    """POST /jupyter-split/border/declassify: approve an export a refusal named, audited."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Takes {item, reason, confirm: true}; declassifies `item` through `policy.declassify` (the one the
        CLI and the magics call: the register and the audit log get their lines) and answers {ok, entry}:
        the audit record as the pane shows it. 400 with the reason for a bad body."""
        body = self.body(bodies.Declassify)
        split = await self.call(core.get_split)
        try:
            record = await self.call(_declassify, body.item, body.reason, split.config)
        except (TypeError, ValueError) as exc:
            raise tornado.web.HTTPError(400, f"cannot declassify {body.item[:200]!r}: {exc}") from None
        self.send({"ok": True, "entry": shown(record)})


def _declassify(item: str, reason: str, config: Config) -> dict[str, Any]:
    return policy.declassify(item, reason, config=config)


def day_start(today: str | None) -> float:
    """When "today" began, in seconds: the time `today` names (the page sends its own midnight with its UTC
    offset, so its day is the user's), or, without one, midnight UTC, as the `since` filter reads a date."""
    if today is None:
        return datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    try:
        start = datetime.fromisoformat(today)
    except ValueError:
        raise ValueError(f"today={today!r} is not a date: write e.g. 2026-11-28 or 2026-11-28T00:00+08:00") from None
    return (start if start.tzinfo else start.replace(tzinfo=timezone.utc)).timestamp()


def border_answer(config: Config | None, decision: str | None, kind: str | None, site: str | None, since: str | None,
                  limit: int, today: float | None = None) -> Any:
    """The border answer for these filters (`config`: the core's, by default), read again only where the
    audit log changed; `today`: when today began (`day_start`), for the counts of today."""
    config = config or core.get_split().config
    path = config.audit_log_path()
    try:
        st = path.stat()
        token: tuple[Any, ...] = (st.st_ino, st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        token = ()
    today = day_start(None) if today is None else today
    key = (decision, kind, site, since, limit, today)  # a new day is a new key: its counts start at 0
    token = (weakref.ref(config), *token)  # equal while a config of the same fields is alive
    kept = _ANSWERS.get(key, token)
    if kept is not None:
        return kept
    dated = policy.audit_entries(None, site, since, config)
    kinds = sorted({r["kind"] for r in dated if isinstance(r.get("kind"), str)})
    records = [r for r in dated if kind is None or r.get("kind") == kind]
    counts = {name: 0 for name in DECISIONS}
    of_today = {name: 0 for name in DECISIONS}
    for record in records:
        if record.get("decision") in counts:
            counts[record["decision"]] += 1
            if _ts(record) >= today:
                of_today[record["decision"]] += 1
    chosen = [r for r in records if decision is None or r.get("decision") == decision]
    body = {"policy": policy_view(config), "entries": [shown(r) for r in reversed(chosen[-limit:])],
            "total": len(chosen), "counts": counts, "today": of_today, "kinds": kinds}
    return _ANSWERS.put(key, token, body)


def _ts(record: dict[str, Any]) -> float:
    try:
        return float(record.get("ts", 0))
    except (TypeError, ValueError):
        return 0.0


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """An audit record as the pane shows it: the fields of `ENTRY_FIELDS`, findings by their masked form."""
    entry = {name: record.get(name) for name in ENTRY_FIELDS}
    findings = record.get("findings")
    if isinstance(findings, list):
        entry["findings"] = [{name: f.get(name) for name in FINDING_FIELDS} for f in findings if isinstance(f, dict)]
    return entry


def policy_view(config: Config) -> dict[str, Any]:
    """The `[policy]` in force, as the pane shows it: home and its jurisdiction, each site's jurisdiction,
    the resident globs, the allow-list, the metrics that may go abroad (None: no limit), the content
    scan's settings (patterns by name: a pattern may spell out what it looks for) and the audit log."""
    rules = config.policy
    scan = rules.scan
    return {
        "home": {"site": config.home.name, "jurisdiction": config.home.jurisdiction},
        "sites": [{"name": s.name, "jurisdiction": s.jurisdiction} for s in config.sites.values()],
        "resident": [redact(glob) for glob in rules.resident],
        "allow_export": [redact(item) for item in rules.allow_export],
        "metrics_abroad": rules.metrics_abroad,
        "scan": {"enabled": scan.enabled, "depth": scan.depth, "max_findings": scan.max_findings,
                 "disable": list(scan.disable), "patterns": sorted(scan.patterns),
                 "sites": {name: {"enabled": s.enabled, "disable": list(s.disable), "patterns": sorted(s.patterns)}
                           for name, s in scan.sites.items()}},
        "audit_log": str(config.audit_log_path()),
        "source": config.source,
    }


HANDLERS: list[tuple[str, type[SplitHandler]]] = [
    ("border", BorderHandler),
    ("border/declassify", DeclassifyHandler),
]
