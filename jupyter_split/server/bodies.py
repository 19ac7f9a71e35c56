"""Request bodies of the sidebar's REST handlers: each one a strict model, checked before any work.

A body that is not a JSON object of the expected fields (`[]`, `null`, `123`, 10,000 nested
lists, a number where a name goes, an unknown field) is answered 400 with the reason; it
never reaches the core. Names are checked by the one rule in `jupyter_split.names`.
"""
from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import SplitError
from ..names import NameRefused, check_name, check_site_path

#: the largest body any handler takes; the sidebar sends a few hundred bytes
MAX_BODY = 64 * 1024
# JSON deeper than this is no body of ours; Python's parser would recurse until RecursionError
MAX_DEPTH = 32

M = TypeVar("M", bound=BaseModel)


class BodyError(SplitError, ValueError):
    """A request body the handler cannot take; the message says which field and why."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Empty(_Body):
    """A POST that takes no fields (cancel): an empty body or `{}`."""


class Transfer(_Body):
    """Copy the published checkpoint `site:name` to the same path on `to_site`."""

    site: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=4096)
    to_site: str = Field(min_length=1, max_length=200)

    @field_validator("site", "to_site")
    @classmethod
    def _site_name(cls, value: str) -> str:
        return check_name("a site name", value, url=True)

    @field_validator("name")
    @classmethod
    def _below_storage(cls, value: str) -> str:
        return check_site_path("the checkpoint path", value)


class Declassify(_Body):
    """Approve the export of `item` (what a refusal names: a location or an item name), with the reason
    (who approved it, and the approval's reference) and `confirm: true`, which the sidebar sends only
    after asking."""

    item: str = Field(min_length=1, max_length=4096)
    reason: str = Field(min_length=1, max_length=2000)
    confirm: bool

    @field_validator("item", "reason")
    @classmethod
    def _one_printable_line(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank: say what, and who approved it with which reference")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("holds a control character (a newline, tab or NUL): write it on one line")
        return value.strip()

    @field_validator("confirm")
    @classmethod
    def _confirmed(cls, value: bool) -> bool:
        if value is not True:
            raise ValueError("must be true: a declassification is made only once the user confirmed it")
        return value


def parse(raw: bytes, model: type[M]) -> M:
    """`raw` as `model`, or BodyError naming the field and the problem."""
    if len(raw) > MAX_BODY:
        raise BodyError(f"the request body has {len(raw)} bytes; at most {MAX_BODY} are taken")
    text = raw.strip()
    if not text:
        data: Any = {}
    else:
        _check_depth(text)
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BodyError(f"the request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BodyError(f"the request body must be a JSON object ({_fields(model)}), not {_kind(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BodyError(_explain(exc, model)) from None


def _check_depth(text: bytes) -> None:
    # Brackets inside strings count too: a false alarm needs 32 of them in a name, which no body of ours has.
    depth = deepest = 0
    for byte in text:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise BodyError(f"the request body nests {deepest} levels deep; at most {MAX_DEPTH} are taken")


def _fields(model: type[BaseModel]) -> str:
    names = list(model.model_fields)
    return "fields " + ", ".join(names) if names else "no fields"


def _kind(value: Any) -> str:
    return {type(None): "null", list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _explain(exc: ValidationError, model: type[BaseModel]) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(body)"
        if err["type"] == "missing":
            problems.append(f"`{field}` is missing")
        elif err["type"] == "extra_forbidden":
            problems.append(f"`{field}` is not a field of this request ({_fields(model)})")
        else:
            cause = err.get("ctx", {}).get("error")
            text = str(cause) if isinstance(cause, NameRefused) else err["msg"].removeprefix("Value error, ")
            problems.append(f"`{field}`: {text}")
    return "the request body is not valid: " + "; ".join(problems)
