"""Templates: native values, text, the sandbox, and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

import prana


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ x }}", "123"),  # a string stays a string, never re-parsed into a number
        ("{{ n }}", 5),
        ("{{ n > 3 }}", True),
        ("{{ [n, n] }}", [5, 5]),
        ("{{ 5 }}", 5),
        ("{{ none }}", None),
        ("n={{ n }}", "n=5"),
        ("{{ data.items }}", [1, 2]),  # the key, not dict.items
        ("{{ data.keys() | list }}", ["items", "_id"]),
        ("{{ data['items'] | sum }}", 3),
        ("{{ data._id }}", "a1"),
        ("{% if n > 3 %}big{% else %}small{% endif %}", "big"),
        ("{{ x | tojson }}", '"123"'),
    ],
)
def test_templates_give_native_values_or_text(template: str, expected: Any) -> None:
    scope = {"x": "123", "n": 5, "data": {"items": [1, 2], "_id": "a1"}}
    result = prana.render_template(template, scope)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ data.__class__ }}",
        "{{ data.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(data) }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ data.items.append(3) }}",
    ],
)
def test_sandbox_refuses_escapes(template: str) -> None:
    with pytest.raises(prana.ExpressionError, match="sandbox"):
        prana.render_template(template, {"data": {"items": [1]}})


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ __import__('os') }}", "unknown name '__import__'"),
        ("{{ 'a' * 10**9 }}", "limit 1000000"),
        ("{{ 2 ** 10000 }}", "exponent 10000 is too large"),
        ("{{ range(10**9) | list }}", "MAX_RANGE"),
        ("{{ missing }}", "unknown name 'missing'"),
        ("{{ data.nope }}", "has no attribute 'nope'"),
        ("{{ data.items.nope }}", "has no attribute 'nope'"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ data.items ", "template syntax error"),
    ],
)
def test_errors_are_expression_errors(template: str, message: str) -> None:
    with pytest.raises(
        prana.ExpressionError, match=message.replace("(", r"\(").replace("*", r"\*")
    ):
        prana.render_template(template, {"data": {"items": [1]}})


def test_expression_error_names_the_template() -> None:
    with pytest.raises(prana.ExpressionError) as caught:
        prana.render_template("{{ a.b }}", {"a": {}})
    assert caught.value.template == "{{ a.b }}"
