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
        # Arithmetic as Python's, each operator its own (the budget checks them all).
        ("{{ n % 2 }}", 1),
        ("{{ 9 % 4 }}", 1),
        ("{{ 7.5 % 2 }}", 1.5),
        ("{{ n // 2 }}", 2),
        ("{{ n / 2 }}", 2.5),
        ("{{ n * 3 }}", 15),
        ("{{ n ** 2 }}", 25),
        ("{{ n + 1 }} {{ n - 1 }}", "6 4"),
        ("{{ 'id-%s' % n }}", "id-5"),
    ],
)
def test_templates_give_native_values_or_text(template: str, expected: Any) -> None:
    scope = {"x": "123", "n": 5, "data": {"items": [1, 2], "_id": "a1"}}
    result = prana.lowlevel.render_template(template, scope)
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
        prana.lowlevel.render_template(template, {"data": {"items": [1]}})


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ __import__('os') }}", "unknown name '__import__'"),
        ("{{ 'a' * 10**9 }}", "Limits.template_value"),
        ("{{ 2 ** 100000 }}", "Limits.integer_digits"),
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
        prana.lowlevel.render_template(template, {"data": {"items": [1]}})


def test_expression_error_names_the_template() -> None:
    with pytest.raises(prana.ExpressionError) as caught:
        prana.lowlevel.render_template("{{ a.b }}", {"a": {}})
    assert caught.value.template == "{{ a.b }}"


@pytest.mark.parametrize(
    ("template", "limit"),
    [
        # Loops within loops: each range is small, together they never end.
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}"
            "{% endfor %}",
            "Limits.template_iterations",
        ),
        (
            "{% for a in data %}{% for b in data %}{% for c in data %}.{% endfor %}{% endfor %}"
            "{% endfor %}",
            "Limits.template_iterations",
        ),
        ("{{ ((2 ** 1000) ** 1000) ** 1000 }}", "Limits.integer_digits"),
        ("{{ 2 ** (10 ** 6) }}", "Limits.integer_digits"),
        ("{{ 'x' | center(10 ** 9) }}", "Limits.template_value"),
        ("{{ 'x' | indent(10 ** 9) }}", "Limits.template_value"),
        ("{{ 'x' | wordwrap(10 ** 9) }}", "Limits.template_value"),
        ("{{ '%999999999d' | format(1) }}", "Limits.template_value"),
        ("{{ '%999999999d' % 1 }}", "Limits.template_value"),
        ("{{ '{:>999999999}'.format(1) }}", "Limits.template_value"),
        ("{{ 'x'.ljust(10 ** 9) }}", "Limits.template_value"),
        ("{{ 'x'.zfill(10 ** 9) }}", "Limits.template_value"),
        ("{{ ('x' * 10 ** 6).replace('x', 'x' * 1000) }}", "Limits.template_value"),
        # A string doubled again and again, with ~ and with +.
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
            "Limits.template_value",
        ),
        (
            "{% set ns = namespace(s=['a']) %}{% for i in range(64) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
            "Limits.template_value",
        ),
        ("{{ 'nan' | float }}", "nan has no JSON value"),
    ],
)
def test_a_template_cannot_hold_the_loop_or_exhaust_memory(template: str, limit: str) -> None:
    data = list(range(1000))
    with pytest.raises(prana.ExpressionError, match=limit.replace(".", r"\.")):
        prana.lowlevel.render_template(template, {"data": data})


def test_the_budget_of_templates_is_configurable() -> None:
    template = "{% for a in range(50) %}{{ a }}{% endfor %}"
    assert prana.lowlevel.render_template(template)[:3] == "012"
    small = prana.Limits(template_iterations=10)
    with pytest.raises(prana.ExpressionError, match=r"Limits\.template_iterations"):
        prana.lowlevel.render_template(template, limits=small)


def test_nothing_of_a_template_runs_when_it_is_loaded() -> None:
    # A constant expression (padding a literal to a gigabyte) is worked out when the
    # node runs, within its budget, not when the workflow is loaded or validated.
    workflow = prana.load_workflow(
        {
            "id": "pad",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {
                    "key": "pad",
                    "type": "data.set",
                    "params": {"values": "{{ 'x' | center(10 ** 9) }}"},
                },
            ],
            "connections": [{"from": "start", "to": "pad"}],
        }
    )
    assert prana.lowlevel.compile_workflow(workflow, prana.ActionRegistry()).trigger == "start"
