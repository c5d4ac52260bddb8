"""JSON data: the one rule for the values prana takes and keeps (DESIGN §5.2, §6).

Inputs, node outputs, resume data, variables, node contexts and what templates build
must be JSON data, at every depth alike:

* ``None``, ``True``/``False``, strings, integers of at most 64 bits, finite floats;
* lists (a tuple is taken as a list) and objects with string keys (any mapping);
* a subclass of ``str``, ``int`` or ``float`` (an enum of them, say) is taken as its
  plain value.

Anything else is refused, naming where it is, never changed silently: NaN and the
infinities (JSON has no value for them), datetimes, UUIDs, bytes, sets, other objects.
Data also has bounded depth and size (:class:`prana.Limits`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._errors import PranaError
from ._limits import DEFAULT_LIMITS, Limits

_INT_RANGE = (-(2**63), 2**64 - 1)  # what JSON readers and the store take whole


class InvalidData(PranaError):
    """A value is not JSON data, or is past a limit (:class:`Limits`); the message
    says where in it (``path``, such as ``.items[2].when``), what is wrong
    (``reason``) and what to do."""

    def __init__(self, what: str, path: str, reason: str) -> None:
        super().__init__(f"{what}{path}: {reason}")
        self.path = path
        self.reason = reason


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: list[str] = []


class _Walk:
    """One walk over a value: its size so far."""

    __slots__ = ("depth_limit", "size", "size_limit")

    def __init__(self, limits: Limits) -> None:
        self.depth_limit = limits.json_depth
        self.size_limit = limits.json_size
        self.size = 0

    def grow(self, by: int) -> None:
        self.size += by
        if self.size > self.size_limit:
            raise _Refused(
                f"it is larger than {self.size_limit} bytes as JSON (Limits.json_size); "
                "keep large data elsewhere and pass a reference to it"
            )

    def copy(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            self.grow(len(value) + 2)
            return value
        if kind is bool or value is None:
            self.grow(4)
            return value
        if kind is int:
            if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
                raise _Refused(
                    f"an integer of {len(str(abs(value)))} digits is too large for JSON data "
                    "(at most 64 bits); pass it as a string"
                )
            self.grow(8)
            return value
        if kind is float:
            if not math.isfinite(value):
                raise _Refused(f"{value} has no JSON value; use null or a string instead")
            self.grow(8)
            return value
        if kind is dict or kind is list or kind is tuple or isinstance(value, Mapping):
            if depth > self.depth_limit:
                raise _Refused(
                    f"it nests deeper than {self.depth_limit} levels (Limits.json_depth)"
                )
            if kind is list or kind is tuple:
                return self._list(value, depth)
            return self._object(value, depth)
        # A subclass of a scalar (an enum of one, say): its plain value.
        if isinstance(value, str):
            return self.copy(str.__str__(value), depth)
        if isinstance(value, int):
            return self.copy(int.__int__(value), depth)
        if isinstance(value, float):
            return self.copy(float.__float__(value), depth)
        raise _Refused(
            f"a {type(value).__module__}.{type(value).__qualname__} is not JSON data; "
            "convert it first (a datetime with .isoformat(), a UUID or a Decimal with "
            "str(), a set with list())"
        )

    # Containers take their plain strings, integers, booleans and nulls in place, and
    # count their size at the end: most values are those, and a call for each would
    # cost more than the rest of the walk.

    def _list(self, value: Any, depth: int) -> list[Any]:
        copied: list[Any] = []
        size = 2
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str:
                size += len(item) + 3
            elif (kind is int and _INT_RANGE[0] <= item <= _INT_RANGE[1]) or (
                kind is bool or item is None
            ):
                size += 9
            else:
                try:
                    item = self.copy(item, depth + 1)
                except _Refused as exc:
                    exc.path.append(f"[{index}]")
                    raise
            copied.append(item)
        self.grow(size)
        return copied

    def _object(self, value: Any, depth: int) -> dict[str, Any]:
        copied: dict[str, Any] = {}
        size = 2
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise _Refused(f"the key {key!r} is not a string (JSON keys are strings)")
                key = str.__str__(key)
            kind = type(item)
            if kind is str:
                size += len(key) + len(item) + 6
            elif (kind is int and _INT_RANGE[0] <= item <= _INT_RANGE[1]) or (
                kind is bool or item is None
            ):
                size += len(key) + 12
            else:
                size += len(key) + 4
                try:
                    item = self.copy(item, depth + 1)
                except _Refused as exc:
                    exc.path.append(f".{key}" if key.isidentifier() else f"[{key!r}]")
                    raise
            copied[key] = item
        self.grow(size)
        return copied


# The types of JSON's values that cannot change in place.
SCALARS = frozenset((str, int, float, bool, type(None)))


def copy_json(value: Any) -> Any:
    """A private copy of JSON data kept by the engine (objects and lists only: what
    :func:`check_json` made of it), sharing its strings and numbers, which cannot
    change."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list:
        return [copy_json(item) for item in value]
    return value


def sized_copy(value: Any) -> tuple[Any, int]:
    """A plain copy of JSON data already checked, and about how many bytes of JSON
    it takes."""
    walk = _Walk(DEFAULT_LIMITS)
    return walk.copy(value, 1), walk.size


def size_past(value: Any, limit: int) -> int:
    """About how many bytes of JSON ``value`` (JSON data) takes, counted only until
    that is past ``limit``: the work is bounded by the limit, not by the data."""
    size = 0
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str:
            size += len(item) + 2
        elif kind in SCALARS:
            size += 8  # a number, true, false or null, about
        elif kind is dict or kind is list or kind is tuple or isinstance(item, Mapping):
            size += 2 + len(item)  # the brackets and the commas
            if size > limit:  # each entry takes a byte at least
                return size
            if kind is list or kind is tuple:
                pending.extend(item)
            else:
                size += sum(len(key) + 3 for key in item)
                pending.extend(item.values())
        else:
            size += 8
        if size > limit:
            return size
    return size


def check_json(value: Any, *, what: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """A private copy of ``value`` if it is JSON data within ``limits`` (see the
    module's docstring). Raises :class:`InvalidData` naming where it is not, as
    ``what`` and a path (``the output.items[2].when: a datetime...``)."""
    try:
        return _Walk(limits).copy(value, 1)
    except _Refused as exc:
        raise InvalidData(what, "".join(reversed(exc.path)), exc.reason) from None
