"""Declared output shapes: a template that reads a field a node's output does not have
is refused when the workflow loads; an output that does not fit its declared shape
fails its node with ``invalid_output``."""

from __future__ import annotations

from typing import Any, TypedDict

import attrs
import pytest

import prana
from tests.helpers import make_workflow, run


@attrs.frozen
class Charge:
    charged: float
    currency: str = "EUR"


class Quote(TypedDict):
    total: float
    lines: list[Any]


def registry(returned: Any) -> prana.ActionRegistry:
    actions = prana.ActionRegistry()

    @actions.action("shop.charge", output=Charge)
    def charge(ctx: prana.NodeContext) -> Any:
        return returned

    @actions.action("shop.quote", output=Quote)
    def quote(ctx: prana.NodeContext) -> Any:
        return {"total": 3.0, "lines": []}

    @actions.action(
        "shop.schema",
        output={"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    )
    def schema(ctx: prana.NodeContext) -> Any:
        return {"ok": True, "extra": 1}  # an open schema takes more fields

    return actions


def reading(field: str, actions: prana.ActionRegistry, source: str = "charge") -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "charge": "shop.charge",
            "quote": "shop.quote",
            "schema": "shop.schema",
            "note": ("data.set", {"values": {"seen": f"{{{{ nodes.{source}.output.{field} }}}}"}}),
        },
        ["start -> charge", "charge -> quote", "quote -> schema", "schema -> note"],
        actions=actions,
    )


def test_a_template_reading_a_field_an_output_does_not_have_is_refused_at_load() -> None:
    actions = registry(Charge(charged=1.0))
    for field, source, message in [
        (
            "chargd",
            "charge",
            "node 'charge' (shop.charge) has no output field 'chargd' (did you mean 'charged'?); its output has charged, currency",
        ),
        (
            "totl",
            "quote",
            "node 'quote' (shop.quote) has no output field 'totl' (did you mean 'total'?)",
        ),
        ("nope", "schema", "node 'schema' (shop.schema) has no output field 'nope'"),
    ]:
        with pytest.raises(prana.WorkflowValidationError) as refused:
            reading(field, actions, source)
        assert f"nodes[4].params.values.seen: {message}" in str(refused.value)
    reading("currency", actions)  # a field it has


def test_the_built_ins_declare_their_outputs() -> None:
    with pytest.raises(prana.WorkflowValidationError) as refused:
        make_workflow(
            {
                "hook": ("webhook.trigger", {"path": "orders"}),
                "totals": ("data.set", {"values": {"sum": 1, "count": 2}}),
                "use": (
                    "data.set",
                    {
                        "values": {
                            "a": "{{ nodes.hook.output.bdy }}",
                            "b": "{{ nodes.totals.output['cnt'] }}",
                        }
                    },
                ),
            },
            ["hook -> totals", "totals -> use"],
        )
    text = str(refused.value)
    assert "node 'hook' (webhook.trigger) has no output field 'bdy' (did you mean 'body'?)" in text
    assert "node 'totals' (data.set) has no output field 'cnt' (did you mean 'count'?)" in text


async def test_an_output_that_fits_its_shape_is_kept_and_an_attrs_instance_becomes_its_fields() -> (
    None
):
    actions = registry(Charge(charged=9.5))
    done = await run(reading("charged", actions), actions=actions)
    assert done.status == "completed"
    assert done.outputs["charge"] == {"charged": 9.5, "currency": "EUR"}
    assert done.outputs["note"] == {"seen": 9.5}
    assert done.outputs["schema"] == {"ok": True, "extra": 1}


@pytest.mark.parametrize(
    ("returned", "problem"),
    [
        ({"currency": "EUR"}, "it has no 'charged'"),
        ({"charged": 1, "tip": 2}, "it has 'tip', which the shape does not"),
        ([1, 2], "it is list, not an object with fields"),
    ],
)
async def test_an_output_that_does_not_fit_its_shape_fails_the_node(
    returned: Any, problem: str
) -> None:
    actions = registry(returned)
    failed = await run(reading("charged", actions), actions=actions)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "invalid_output"
    assert failed.error.node_key == "charge"
    assert "the output does not have the shape 'shop.charge' declares: " + problem in (
        failed.error.message
    )


def test_an_output_declaration_must_be_a_shape() -> None:
    actions = prana.ActionRegistry()
    with pytest.raises(
        ValueError, match=r"output of 'shop\.odd': an output shape is an attrs class"
    ):
        actions.action("shop.odd", output=42)(lambda ctx: None)  # type: ignore[arg-type]
