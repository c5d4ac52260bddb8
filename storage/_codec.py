"""How persisted records become JSON text and back: one cattrs converter on orjson.

Records (errors, suspensions, node runs) are unstructured to plain data with cattrs
and encoded with orjson; nothing else in prana encodes them, so a change of format
is made here once. Round trips are checked by property tests.

JSON is stored as text, not as orjson's bytes: a user can read it in the ``sqlite3``
shell and query it with SQLite's JSON functions (which read a blob as their binary
JSONB format), and Python's sqlite3 module binds a ``str`` directly where it looks a
``bytes`` value up in its adapter registry first (decision 0031).
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from cattrs.preconf.orjson import make_converter

from prana._records import ErrorInfo

T = TypeVar("T")

converter = make_converter(omit_if_default=True)


def dumps(value: Any) -> str:
    """JSON text of plain data (node outputs, variables, routing state).

    Plain data goes straight to orjson; a record found inside it (an attrs class) is
    unstructured by the converter.
    """
    return orjson.dumps(value, default=_unstructure, option=orjson.OPT_NON_STR_KEYS).decode()


def dumps_output(value: Any, longest_text: int) -> str | bytes:
    """JSON of a node's output: text, or past ``longest_text`` bytes the UTF-8 bytes
    orjson made, for a statement to store as text (``CAST(? AS TEXT)``). Decoding
    them here would make a second copy of a large output on the event loop; SQLite
    takes the bytes as they are, on the thread that writes them."""
    encoded = orjson.dumps(value, default=_unstructure, option=orjson.OPT_NON_STR_KEYS)
    return encoded if len(encoded) > longest_text else encoded.decode()


def _unstructure(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    unstructured = converter.unstructure(value)
    if unstructured is value:
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
    return unstructured


def loads(data: bytes | str | None) -> Any:
    """Plain data from JSON text or bytes (``None`` stays ``None``)."""
    return None if data is None else orjson.loads(data)


def dumps_error(error: ErrorInfo | None) -> str | None:
    """JSON text of an error record, or ``None``."""
    return None if error is None else orjson.dumps(converter.unstructure(error)).decode()


def loads_error(data: bytes | str | None) -> ErrorInfo | None:
    """The error record in JSON text or bytes, or ``None``."""
    return None if data is None else converter.structure(orjson.loads(data), ErrorInfo)


def structure(data: Any, cls: type[T]) -> T:
    """A record of type ``cls`` from plain data."""
    return converter.structure(data, cls)
