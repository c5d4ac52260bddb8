"""Declared output shapes (seed 004): what fields a node's output has.

An action may declare its output's shape (``@actions.action(..., output=...)``): an
attrs class, a ``TypedDict``, or a JSON schema of an object (``properties``,
``required``, ``additionalProperties``); the built-ins whose outputs have a known
shape declare theirs, some from the node's parameters. The shape is used twice: a
template that reads ``nodes.x.output.field`` where ``x``'s output has no ``field`` is a
problem when the workflow is loaded, and an output that does not fit its declared
shape fails its node with ``invalid_output``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs


@attrs.frozen
class OutputShape:
    """The fields an output has (``required`` among them); ``closed``: no others."""

    fields: frozenset[str]
    required: frozenset[str]
    closed: bool
    cls: type | None = None  # an attrs class: an instance of it is the output as data

    def problem(self, output: Any) -> str | None:
        """What is wrong with ``output`` for this shape, or ``None``."""
        if not isinstance(output, Mapping):
            return f"it is {type(output).__name__}, not an object with fields"
        missing = sorted(self.required - set(output))
        if missing:
            return f"it has no {', '.join(map(repr, missing))}"
        if self.closed:
            unknown = sorted(set(output) - self.fields)
            if unknown:
                return (
                    f"it has {', '.join(map(repr, unknown))}, which the shape does not "
                    f"(its fields: {', '.join(sorted(self.fields))})"
                )
        return None


# What ``output=`` takes: a class or schema, or a function of a node's parameters
# that gives one (or None: unknown for that node).
OutputSpec = type | Mapping[str, Any] | Callable[[Mapping[str, Any]], Any] | OutputShape


def shape_of(spec: Any) -> OutputShape | None:
    """The shape an ``output=`` declaration describes, or ``None`` for none. Raises
    :class:`ValueError` for a declaration that is none of the kinds it can be."""
    if spec is None:
        return None
    if isinstance(spec, OutputShape):
        return spec
    if isinstance(spec, type) and attrs.has(spec):
        fields = attrs.fields(spec)
        return OutputShape(
            fields=frozenset(field.name for field in fields),
            required=frozenset(field.name for field in fields if field.default is attrs.NOTHING),
            closed=True,
            cls=spec,
        )
    if isinstance(spec, type) and typing.is_typeddict(spec):
        required: frozenset[str] = spec.__required_keys__  # type: ignore[attr-defined]
        return OutputShape(
            fields=frozenset(typing.get_type_hints(spec)), required=frozenset(required), closed=True
        )
    if isinstance(spec, Mapping) and spec.get("type", "object") == "object":
        properties = spec.get("properties", {})
        return OutputShape(
            fields=frozenset(properties),
            required=frozenset(spec.get("required", ())),
            closed=spec.get("additionalProperties", True) is False,
        )
    raise ValueError(
        f"an output shape is an attrs class, a TypedDict or a JSON schema of an object, "
        f"not {spec!r}"
    )


def fields_shape(*names: str) -> OutputShape:
    """The shape of an object with exactly these fields (the built-ins')."""
    return OutputShape(fields=frozenset(names), required=frozenset(names), closed=True)
