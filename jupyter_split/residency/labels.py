"""Residency labels on Python objects, and finding them in what a transfer would carry.

A label is a jurisdiction (ISO code) mapped to where it came from, so a refusal can
say why. It lives on the object where it can travel with it: in `obj.attrs` for
pandas and xarray (which carry `attrs` through many operations and pickles), else
as an attribute (tensors and most objects pickle their `__dict__`), else in a weak
registry for objects that take no attribute (numpy arrays).
"""
from __future__ import annotations

import inspect
import re
import sys
import types
import weakref
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Mapping

ATTR = "__jupyter_split_labels__"
ATTRS_KEY = "jupyter_split.labels"
DECLASSIFIED = "__declassified__"  # a reserved key in the same mapping, holding the approval

_registry: dict[int, tuple[weakref.ref, dict[str, str]]] = {}
# Plain dicts, lists and sets take neither an attribute nor a weak reference. Being
# mutable they are never shared the way small ints or interned strings are, so holding
# them (by id, alive) labels exactly that object. A labelled one lives as long as this process.
_PINNABLE = (dict, list, set, bytearray)
_pinned: dict[int, tuple[Any, dict[str, str]]] = {}
# Values that cannot carry a label at all (str, numbers, tuples) delivered as `--out`
# variables: labelled as that variable name holding that very object.
_by_name: dict[tuple[str, int], tuple[Any, dict[str, str]]] = {}
_CONTAINERS = (dict, list, tuple, set, frozenset, deque)
_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), range, memoryview)


def jurisdiction_code(value: str) -> str:
    """`value` as an upper-case ISO 3166 two-letter code; raises ValueError for anything else."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError(f"{value!r} is not an ISO 3166 two-letter country code, e.g. \"CN\".")
    return value.upper()


def _caller() -> str:
    frame = sys._getframe(2)  # 0: here, 1: label(), 2: its caller
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def label(obj: Any, jurisdiction: str, origin: str | None = None) -> Any:
    """Mark `obj` as data that must stay in `jurisdiction`; returns `obj` for chaining."""
    code = jurisdiction_code(jurisdiction)
    _store(obj, {code: origin or f"policy.label() at {_caller()}"})
    return obj


def _store(obj: Any, entries: Mapping[str, Any], pin: bool = True) -> None:
    attrs = getattr(obj, "attrs", None) if not isinstance(obj, type) else None
    if isinstance(attrs, dict):
        attrs[ATTRS_KEY] = {**attrs.get(ATTRS_KEY, {}), **entries}
        return
    current = _own(obj)
    try:
        setattr(obj, ATTR, {**(current or {}), **entries})
        return
    except (AttributeError, TypeError):
        pass
    try:
        ref = weakref.ref(obj, lambda _, key=id(obj): _registry.pop(key, None))
    except TypeError:
        if pin and type(obj) in _PINNABLE:
            pinned = _pinned.get(id(obj))
            _pinned[id(obj)] = (obj, {**(pinned[1] if pinned else {}), **entries})
            return
        kind = type(obj).__name__
        raise TypeError(
            f"cannot label a {kind} object: it takes neither an attribute nor a weak reference. "
            "Keep it in an object that takes one (a list, a numpy array, a class instance) and label that."
        ) from None
    previous = _registry.get(id(obj))
    merged = {**(previous[1] if previous and previous[0]() is obj else {}), **entries}
    _registry[id(obj)] = (ref, merged)


def _own(obj: Any) -> dict[str, Any] | None:
    """The label mapping stored on `obj` itself, if any (ignoring proxies that invent attributes)."""
    if isinstance(obj, type):
        found = obj.__dict__.get(ATTR)
    else:
        attrs = getattr(obj, "attrs", None)
        found = attrs.get(ATTRS_KEY) if isinstance(attrs, dict) else None
        if found is None:
            try:
                found = vars(obj).get(ATTR)
            except TypeError:  # no __dict__
                found = None
    if isinstance(found, dict):
        return found
    entry = _registry.get(id(obj))
    if entry and entry[0]() is obj:
        return entry[1]
    pinned = _pinned.get(id(obj))
    return pinned[1] if pinned and pinned[0] is obj else None


def label_origins(obj: Any) -> dict[str, str]:
    """The labels on `obj` and where each came from (declassified objects included)."""
    return {k: str(v) for k, v in (_own(obj) or {}).items() if k != DECLASSIFIED}


def labels_of(obj: Any) -> set[str]:
    """The jurisdictions `obj` itself is labelled with (not what it contains; see `collect`)."""
    return set(label_origins(obj))


def mark_declassified(obj: Any, approval: str) -> None:
    """Record the approval on `obj`, so `collect` skips it and what it holds.

    Raises TypeError for an object that can carry no label (a str, a number, a tuple).
    """
    _store(obj, {DECLASSIFIED: approval})


def declassified(obj: Any) -> str | None:
    """The approval recorded on `obj` by `declassify`, or None."""
    value = (_own(obj) or {}).get(DECLASSIFIED)
    return str(value) if value else None


def collect(obj: Any) -> dict[str, str]:
    """Labels on `obj` or anything a pickle of it would carry, except declassified parts.

    Walks containers, instance `__dict__`s and, for functions, the closure cells,
    defaults and globals cloudpickle would send by value. Every object once.
    """
    found: dict[str, str] = {}
    for item in _walk(obj, lambda item: () if declassified(item) else _children(item)):
        if not declassified(item):
            for code, origin in label_origins(item).items():
                found.setdefault(code, origin)
    return found


def _walk(obj: Any, children: Callable[[Any], Iterable[Any]]) -> Iterator[Any]:
    """`obj` and what `children` reaches from it, breadth first, each object once."""
    seen: set[int] = set()
    queue: deque[Any] = deque([obj])
    while queue:
        item = queue.popleft()
        if isinstance(item, _LEAVES) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        queue.extend(children(item))


def _children(item: Any) -> Iterable[Any]:
    if isinstance(item, dict):
        return [*item.keys(), *item.values()]
    if isinstance(item, _CONTAINERS):
        return item
    if isinstance(item, (types.ModuleType, type)):
        return ()
    if isinstance(item, types.FunctionType):
        return _function_children(item)
    if isinstance(item, types.MethodType):
        return (item.__self__, item.__func__)
    try:
        return list(vars(item).values())
    except TypeError:
        return ()


def _function_children(func: types.FunctionType) -> list[Any]:
    children: list[Any] = [cell.cell_contents for cell in func.__closure__ or () if _filled(cell)]
    children += [*(func.__defaults__ or ()), *(func.__kwdefaults__ or {}).values()]
    if func.__module__ in ("__main__", None) or not inspect.getmodule(func):
        names = set(func.__code__.co_names)
        children += [value for name, value in func.__globals__.items() if name in names]
    return children


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def stamp(name: str, obj: Any, origins: Mapping[str, str]) -> None:
    """Label a delivered variable and the values of its containers (so parts taken out of it
    stay labelled); a value that takes no label is labelled under its variable name."""
    if not origins:
        return
    for item in _walk(obj, lambda item: _children(item) if isinstance(item, _CONTAINERS) else ()):
        try:
            # pin only the variable itself: pinning a model's inner dicts would keep it alive
            _store(item, origins, pin=item is obj)
        except TypeError:
            pass  # a tuple, or a dict inside one: its labellable parts still are
    if not label_origins(obj):
        _by_name[(name, id(obj))] = (obj, dict(origins))


def receive_outputs(values: Mapping[str, Any], labels: Mapping[str, Mapping[str, str]]) -> None:
    """Label `--out` variables as delivered, with the labels their run reported for each."""
    for name, value in values.items():
        stamp(name, value, labels.get(name) or {})


def variable_origins(name: str, obj: Any) -> dict[str, str]:
    """Labels of the variable `name` holding `obj`: its own, those inside it, those on its name."""
    found = collect(obj)
    entry = _by_name.get((name, id(obj)))
    if entry and entry[0] is obj and not declassified(obj):
        for code, origin in entry[1].items():
            found.setdefault(code, origin)
    return found


def nbytes(obj: Any) -> int | None:
    """A cheap size estimate for the audit log (tensors, arrays), else None."""
    value = getattr(obj, "nbytes", None)
    if isinstance(value, int):
        return value
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        try:
            return int(obj.element_size() * obj.numel())
        except Exception:  # noqa: BLE001 - a size estimate must never break a transfer
            return None
    return None
