"""The handlers' shared plumbing: blocking core calls off the server's loop, errors as JSON that say
what to do, query arguments checked, and answers a poll can revalidate.

Every GET the sidebar polls carries an ETag and `Cache-Control: no-cache` (keep it, but ask again):
a poll that sends the ETag back as `If-None-Match` gets a 304 with no body while nothing changed.
Where the handler has a cheap token of its state (the run index's change counter, the audit log's
size and time), the last answer per query is kept in an `Answers`, and an unchanged poll reads
only the token: no body is built.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel

from ..errors import SplitError, http_answer
from . import bodies

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: the browser may keep a poll's answer, but must ask the server again (with its ETag) each time
CACHE_CONTROL = "no-cache"


def etag_of(body: bytes) -> str:
    """A strong ETag for `body`: a short hash of its bytes."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


@dataclass(frozen=True)
class Answer:
    """One GET's answer as sent: the state token it was built from, its ETag and its bytes."""

    token: Hashable
    etag: str
    body: bytes
    live: bool = False  # built from state the token does not follow (an active run's log): build again


class Answers:
    """The last answer per query (the least recently asked go first past `size`): an unchanged poll
    answers from here, by token, without building its body."""

    def __init__(self, size: int = 64):
        self._size = size
        self._kept: OrderedDict[Hashable, Answer] = OrderedDict()
        self._lock = threading.Lock()  # filled from worker threads

    def get(self, key: Hashable, token: Hashable) -> Answer | None:
        """The answer kept for `key` if it was built from `token` and nothing it does not follow."""
        with self._lock:
            answer = self._kept.get(key)
            if answer is None or answer.live or answer.token != token:
                return None
            self._kept.move_to_end(key)
            return answer

    def latest(self, key: Hashable) -> Answer | None:
        """The answer kept for `key`, whatever its token (the caller judges it, e.g. by its age)."""
        with self._lock:
            return self._kept.get(key)

    def put(self, key: Hashable, token: Hashable, body: dict[str, Any], live: bool = False) -> Answer:
        """Keep `body` (as JSON) as the answer for `key` at `token`, and return it."""
        data = json.dumps(body, default=str).encode()
        answer = Answer(token, etag_of(data), data, live)
        with self._lock:
            self._kept[key] = answer
            self._kept.move_to_end(key)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return answer

    def clear(self) -> None:
        """Forget every kept answer."""
        with self._lock:
            self._kept.clear()


class SplitHandler(APIHandler):
    """Shared plumbing: blocking core calls off the server's loop, errors as JSON that say what to do."""

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run a blocking core call in a worker thread. A SplitError a user can fix becomes an HTTP error
        with its class's status and its message; any other error stays a 500."""
        try:
            return await asyncio.to_thread(func, *args)
        except SplitError as exc:
            answer = http_answer(exc)
            if answer is None:
                raise
            raise tornado.web.HTTPError(answer[0], str(exc), reason=answer[1]) from None

    def int_arg(self, name: str, default: int, low: int = 0, high: int | None = None) -> int:
        """The query argument `name` as an int (`default` when absent); 400 where it is not a whole
        number or lies outside [low, high]."""
        text = self.get_query_argument(name, str(default))
        try:
            value = int(text)
        except ValueError:
            raise tornado.web.HTTPError(400, f"query argument {name}={text[:100]!r} is not a whole number") from None
        if value < low:
            raise tornado.web.HTTPError(400, f"query argument {name}={value} is below {low}; give {low} or more")
        if high is not None and value > high:
            raise tornado.web.HTTPError(400, f"query argument {name}={value} is above {high}; give {high} or less")
        return value

    def site_arg(self) -> str | None:
        """The query argument `site`, or None; 400 where it cannot be a site's name (the config's rule)."""
        site = self.get_query_argument("site", None)
        if site is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}", site):
            raise tornado.web.HTTPError(400, f"query argument site={site[:200]!r} is not a site name: "
                                             "letters, digits, '_' or '-'")
        return site

    def send(self, body: dict[str, Any]) -> None:
        """Finish the request with `body` as JSON; values JSON cannot hold are written as strings. A GET's
        answer gets tornado's ETag of its bytes (and a 304 when it matches `If-None-Match`)."""
        if self.request.method == "GET":
            self.set_header("Cache-Control", CACHE_CONTROL)
        self.finish(json.dumps(body, default=str))

    def send_answer(self, answer: Answer) -> None:
        """Finish a GET with `answer`: a 304 with no body where the poll's `If-None-Match` holds its ETag."""
        self.set_header("Cache-Control", CACHE_CONTROL)
        self.set_header("Etag", answer.etag)  # set here, so tornado neither hashes the body again nor checks
        if self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        self.finish(answer.body)

    def body(self, model: type[M]) -> M:
        """The request body as `model`; anything else is a 400 that names the field and why."""
        try:
            return bodies.parse(self.request.body or b"", model)
        except bodies.BodyError as exc:
            raise tornado.web.HTTPError(400, str(exc), reason="invalid request body") from None
