"""Strict cattrs structuring shared by workflow loading and action parameters.

cattrs' defaults convert loosely (``int("3")``, ``int(2.7)``); a workflow file must
say what it means, so scalars are checked, not coerced. Structuring errors are
translated into :class:`Problem` records with paths like ``nodes[2].settings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from ._errors import Problem, did_you_mean

# Field names that differ between Python and the workflow file.
FILE_NAMES = {"from_": "from"}


def type_name(value: object) -> str:
    """How a value's JSON type reads in a message: ``a string``, ``a list``..."""
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }
    if type(value) in names:
        return names[type(value)]
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


def _strict_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type_name(value)} ({value!r})")
    return value


def _strict_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type_name(value)} ({value!r})")
    return value


def _strict_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type_name(value)} ({value!r})")
    return float(value)


def _strict_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type_name(value)} ({value!r})")
    return value


def _is_list(cls: Any) -> bool:
    return get_origin(cls) is list or cls is list


def _is_object(cls: Any) -> bool:
    return (get_origin(cls) is dict and get_args(cls)[:1] == (str,)) or cls is dict


def make_strict_converter() -> cattrs.Converter:
    """A converter that refuses unknown fields and checks scalar and container types
    exactly (a string is not a list of characters)."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(bool, _strict_bool)

    def structure_list(value: object, cls: Any) -> list[Any]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type_name(value)} ({value!r})")
        item_type = (get_args(cls) or (Any,))[0]
        if item_type is Any:
            return list(value)
        items, errors = [], []
        for index, item in enumerate(value):
            try:
                items.append(converter.structure(item, item_type))
            except Exception as exc:
                exc.__notes__ = [
                    *getattr(exc, "__notes__", []),
                    IterableValidationNote(f"Structuring {cls} @ index {index}", index, item_type),
                ]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {cls}", errors, cls)
        return items

    def structure_object(value: object, cls: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {type_name(value)} ({value!r})")
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, got {key!r}")
        return dict(value)

    converter.register_structure_hook_func(_is_list, structure_list)
    converter.register_structure_hook_func(_is_object, structure_object)
    return converter


def join_path(path: str, name: str | int) -> str:
    """Extend a problem path with a field name or a list index."""
    if isinstance(name, int):
        return f"{path}[{name}]"
    name = FILE_NAMES.get(name, name)
    return f"{path}.{name}" if path else name


def allowed_fields(cls: type) -> list[str]:
    """The field names of an attrs class as a workflow file spells them."""
    return [FILE_NAMES.get(field.name, field.name) for field in attrs.fields(cls)]


def problems_from(exc: BaseException, path: str) -> list[Problem]:
    """Translate a cattrs structuring error into problems with paths."""
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        problems: list[Problem] = []
        for inner, note in with_notes:
            problems.extend(problems_from(inner, join_path(path, note.name)))
        for inner in without:
            problems.extend(problems_from(inner, path))
        return problems
    if isinstance(exc, IterableValidationError):
        with_index, without = exc.group_exceptions()
        problems = []
        for inner, index_note in with_index:
            problems.extend(problems_from(inner, join_path(path, index_note.index)))
        for inner in without:
            problems.extend(problems_from(inner, path))
        return problems
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = allowed_fields(exc.cl)
        return [
            Problem(
                path=join_path(path, key),
                message=f"unknown field{did_you_mean(key, allowed)}; "
                f"allowed fields are {', '.join(allowed)}",
            )
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, KeyError):
        return [Problem(path=path, message="required field is missing")]
    if isinstance(exc, AttributeError) and "keys" in str(exc):
        return [Problem(path=path, message="expected an object")]
    return [Problem(path=path, message=str(exc))]
