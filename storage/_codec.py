"""How persisted records become bytes and back: one cattrs converter on orjson.

Records (errors, suspensions, node runs) are unstructured to plain data with cattrs
and encoded with orjson; nothing else in prana encodes them, so a change of format
is made here once. Round trips are checked by property tests.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from cattrs.preconf.orjson import make_converter

from prana._records import ErrorInfo

T = TypeVar("T")

converter = make_converter(omit_if_default=True)


def dumps(value: Any) -> bytes:
    """JSON bytes of plain data (node outputs, variables, routing state).

    Plain data goes straight to orjson; a record found inside it (an attrs class) is
    unstructured by the converter.
    """
    return orjson.dumps(value, default=_unstructure, option=orjson.OPT_NON_STR_KEYS)


def _unstructure(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    unstructured = converter.unstructure(value)
    if unstructured is value:
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
    return unstructured


def loads(data: bytes | str | None) -> Any:
    """Plain data from JSON bytes (``None`` stays ``None``)."""
    return None if data is None else orjson.loads(data)


def dumps_error(error: ErrorInfo | None) -> bytes | None:
    """JSON bytes of an error record, or ``None``."""
    return None if error is None else orjson.dumps(converter.unstructure(error))


def loads_error(data: bytes | None) -> ErrorInfo | None:
    """The error record in JSON bytes, or ``None``."""
    return None if data is None else converter.structure(orjson.loads(data), ErrorInfo)


def structure(data: Any, cls: type[T]) -> T:
    """A record of type ``cls`` from plain data."""
    return converter.structure(data, cls)
