"""Checking and structuring node parameters against an action's params class.

At compile time, parameters that hold no template are checked against the declared
types, so a typo fails before anything runs. At run time the rendered parameters are
structured into the params class the action receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._convert import allowed_fields, join_path, make_strict_converter, problems_from
from ._errors import Problem, did_you_mean
from ._expressions import contains_template

_converter = make_strict_converter()


def check_params(params_class: type, params: Mapping[str, Any], path: str) -> list[Problem]:
    """Problems of ``params`` against ``params_class``: unknown, missing, wrong types.

    Values holding templates are checked for presence only; their type is known only
    when they are rendered.
    """
    attrs.resolve_types(params_class)
    fields = {field.name: field for field in attrs.fields(params_class)}
    problems: list[Problem] = []
    names = allowed_fields(params_class)
    for key in params:
        if key not in fields:
            problems.append(
                Problem(
                    path=join_path(path, key),
                    message=f"unknown parameter{did_you_mean(key, names)}; "
                    f"this action takes {', '.join(names) or 'no parameters'}",
                )
            )
    for name, field in fields.items():
        if name not in params:
            if field.default is attrs.NOTHING:
                problems.append(
                    Problem(path=join_path(path, name), message="required parameter is missing")
                )
            continue
        value = params[name]
        if contains_template(value):
            continue
        try:
            _converter.structure(value, field.type)
        except Exception as exc:  # cattrs raises exception groups and plain errors alike
            problems.extend(problems_from(exc, join_path(path, name)))
    return problems


def structure_params(params_class: type, rendered: Mapping[str, Any]) -> Any:
    """An instance of ``params_class`` from rendered parameters.

    Raises ``ValueError`` whose message lists every problem, with parameter paths.
    """
    try:
        return _converter.structure(dict(rendered), params_class)
    except Exception as exc:  # cattrs raises exception groups and plain errors alike
        problems = problems_from(exc, "params")
        raise ValueError("; ".join(str(problem) for problem in problems)) from None
