"""Node contexts: what nodes of one execution keep between their runs (a loop's
cursor, the items of ``core.for_each``), a part of its state machine.

A context is a set of fields. The part notes which fields changed since the last
checkpoint, which saves only those: a large value a node keeps (the items it loops
over) is written once, not at every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class NodeContexts:
    """The contexts of one execution's nodes, by node key."""

    __slots__ = ("_changed", "_contexts")

    def __init__(self) -> None:
        self._contexts: dict[str, dict[str, Any]] = {}
        self._changed: dict[str, set[str]] = {}  # node key -> fields changed

    def get(self, node_key: str) -> Mapping[str, Any]:
        """A node's context (empty if it has none)."""
        return self._contexts.get(node_key, _EMPTY)

    def copy(self) -> dict[str, dict[str, Any]]:
        """Every node's context, as plain dicts."""
        return {key: dict(fields) for key, fields in self._contexts.items()}

    def set(self, node_key: str, fields: dict[str, Any]) -> None:
        """Replace a node's context, noting which of its fields changed. A field holding
        the very object it held before is unchanged: actions do not change their inputs
        in place (``isolate_inputs``). A context without fields is no context, as in a
        store."""
        before = self._contexts.get(node_key)
        if fields:
            self._contexts[node_key] = fields
        else:
            self._contexts.pop(node_key, None)
        changed = self._changed.setdefault(node_key, set())
        if before is None:
            changed.update(fields)
            return
        changed.update(field for field, value in fields.items() if before.get(field) is not value)
        changed.update(field for field in before if field not in fields)

    def restored(self, contexts: Mapping[str, Mapping[str, Any]], *, unsaved: bool) -> None:
        """The contexts a store kept; with ``unsaved``, all of them are to be saved (a
        new execution made in a state)."""
        self._contexts = {key: dict(fields) for key, fields in contexts.items()}
        self._changed = {key: set(fields) for key, fields in contexts.items()} if unsaved else {}

    @property
    def has_changes(self) -> bool:
        return bool(self._changed)

    def take_changes(self) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[str, ...]]]:
        """The fields changed since the last checkpoint, by node (their values now),
        and the fields dropped, by node; then none is changed."""
        contexts: dict[str, dict[str, Any]] = {}
        dropped: dict[str, tuple[str, ...]] = {}
        for key, fields in self._changed.items():
            now = self._contexts.get(key, _EMPTY)
            contexts[key] = {field: now[field] for field in fields if field in now}
            gone = tuple(field for field in fields if field not in now)
            if gone:
                dropped[key] = gone
        self._changed.clear()
        return contexts, dropped
