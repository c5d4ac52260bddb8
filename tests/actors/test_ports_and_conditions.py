"""Where a node's output goes: the default port of an action, and what a condition
of ``logic.if`` or of a ``logic.switch`` case means."""

from __future__ import annotations

import json
from typing import Any

import pytest

import prana
from tests.helpers import make_workflow, run


async def test_a_plain_return_goes_to_the_first_declared_output() -> None:
    actions = prana.ActionRegistry()

    @actions.action("test.produce", outputs=("output", "other"))
    def produce(ctx: prana.NodeContext) -> Any:
        return {"made": True}

    workflow = make_workflow(
        {"start": "manual.trigger", "make": "test.produce", "after": "core.noop"},
        ["start -> make", "make.output -> after"],
        actions=actions,
    )
    result = await run(workflow, actions=actions)
    assert result.status == "completed"
    assert result.order == ["start", "make", "after"]
    assert result.node_runs[1].port == "output"
    assert result.outputs["after"] == {"made": True}


def test_a_default_port_that_is_not_an_output_is_refused_when_registered() -> None:
    actions = prana.ActionRegistry()
    with pytest.raises(ValueError) as refused:

        @actions.action("test.odd", outputs=("yes", "no"), default_port="main")
        def odd(ctx: prana.NodeContext) -> Any:
            return None

    assert str(refused.value) == (
        "default_port 'main' of 'test.odd' is not one of its outputs (yes, no); "
        "leave it out to use the first output"
    )
    assert "test.odd" not in actions


def branching(condition: Any) -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "check": ("logic.if", {"condition": condition}),
            "yes": "core.noop",
            "no": "core.noop",
        },
        ["start -> check", "check.true -> yes", "check.false -> no"],
    )


@pytest.mark.parametrize(
    ("value", "branch"),
    [
        (True, "yes"),
        (False, "no"),
        ("true", "yes"),
        ("FALSE", "no"),
        ("False", "no"),
        (" true ", "yes"),
        ("1", "yes"),
        ("0", "no"),
        (1, "yes"),
        (0, "no"),
    ],
)
async def test_a_condition_is_read_as_true_or_false_whatever_carries_it(
    value: Any, branch: str
) -> None:
    # What a webhook's query string or header carries is text: "false" and "0" are
    # false, as a user means them.
    result = await run(branching("{{ input.flag }}"), {"flag": value})
    assert result.status == "completed"
    assert result.order == ["start", "check", branch]


@pytest.mark.parametrize("value", ["yes", "", None, 2, [], {"a": 1}, "truthy"])
async def test_a_condition_that_is_neither_true_nor_false_fails_the_node(value: Any) -> None:
    result = await run(branching("{{ input.flag }}"), {"flag": value})
    assert result.status == "failed"
    assert result.order == ["start", "check"]
    assert result.error is not None
    assert result.error.code == "invalid_condition"
    assert result.error.node_key == "check"
    assert "which is neither true nor false: a condition must be true or false" in (
        result.error.message
    )
    assert f" is {json.dumps(value)}, which" in result.error.message  # as JSON: null, not None


def test_a_constant_condition_that_means_nothing_is_refused_at_load_time() -> None:
    with pytest.raises(prana.WorkflowValidationError) as refused:
        branching("yes")
    assert "nodes[1].params.condition: 'yes' is not a condition" in str(refused.value)
    with pytest.raises(prana.WorkflowValidationError) as refused:
        make_workflow(
            {
                "start": "manual.trigger",
                "route": ("logic.switch", {"cases": [{"port": "a", "condition": "maybe"}]}),
            },
            ["start -> route"],
        )
    assert "cases[0].condition: 'maybe' is not a condition" in str(refused.value)


@pytest.mark.parametrize(("value", "port"), [("0", "default"), ("1", "big"), ("false", "default")])
async def test_a_switch_case_condition_reads_as_logic_if_does(value: str, port: str) -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "route": ("logic.switch", {"cases": [{"port": "big", "condition": "{{ input.big }}"}]}),
            "big": "core.noop",
            "other": "core.noop",
        },
        ["start -> route", "route.big -> big", "route.default -> other"],
    )
    result = await run(workflow, {"big": value})
    assert result.node_runs[1].port == port
