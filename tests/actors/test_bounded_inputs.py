"""Nothing a workflow author or a caller sends can freeze or exhaust the engine:
templates, inputs and outputs are bounded, and data follows one JSON rule at every
depth (DESIGN §6)."""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

import anyio
import pytest

import prana
from tests.helpers import make_workflow


def returning(value: Any) -> tuple[prana.ActionRegistry, prana.Workflow]:
    actions = prana.ActionRegistry()

    @actions.action("test.give")
    def give(ctx: prana.NodeContext) -> Any:
        return value

    workflow = make_workflow(
        {"start": "manual.trigger", "give": "test.give"}, ["start -> give"], actions=actions
    )
    return actions, workflow


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (math.nan, "the output: nan has no JSON value"),
        ({"a": [1, {"b": math.inf}]}, r"the output\.a\[1\]\.b: inf has no JSON value"),
        ({"when": datetime.datetime(2030, 1, 1)}, r"the output\.when: a datetime\.datetime is not"),
        ([{1: "x"}], r"the output\[0\]: the key 1 is not a string"),
        ({"big": 2**70}, r"the output\.big: an integer of 22 digits is too large"),
    ],
)
async def test_an_output_that_is_not_json_data_fails_its_node_at_any_depth(
    output: Any, message: str
) -> None:
    actions, workflow = returning(output)
    async with prana.Engine(actions=actions, env={}) as engine:
        result = await engine.run(workflow)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "invalid_output"
    assert result.error.node_key == "give"
    assert re.search(message, result.error.message)


async def test_inputs_and_outputs_have_bounded_depth_and_size() -> None:
    deep: Any = "bottom"
    for _ in range(200):
        deep = [deep]
    actions, workflow = returning({"ok": True})
    async with prana.Engine(actions=actions, env={}) as engine:
        with pytest.raises(
            prana.InvalidData, match=r"nests deeper than 100 levels \(Limits\.json_depth\)"
        ):
            await engine.run(workflow, {"deep": deep})
    small = prana.Limits(json_depth=4, json_size=1000)
    async with prana.Engine(actions=actions, env={}, limits=small) as engine:
        with pytest.raises(prana.InvalidData, match=r"the input\.a\.b\.c\.d: it nests deeper"):
            await engine.run(workflow, {"a": {"b": {"c": {"d": [1]}}}})
        with pytest.raises(prana.InvalidData, match=r"larger than 1000 bytes .*Limits\.json_size"):
            await engine.run(workflow, {"text": "x" * 2000})
        assert (await engine.run(workflow, {"a": 1})).status == "completed"
    big_actions, big = returning("x" * 2000)
    async with prana.Engine(actions=big_actions, env={}, limits=small) as engine:
        result = await engine.run(big)
    assert result.error is not None
    assert "Limits.json_size" in result.error.message


async def test_a_runaway_template_fails_its_node_and_the_engine_carries_on() -> None:
    runaway = make_workflow(
        {
            "start": "manual.trigger",
            "spin": (
                "data.set",
                {
                    "values": "{% for a in range(100000) %}{% for b in range(100000) %}"
                    "{% endfor %}{% endfor %}done"
                },
            ),
        },
        ["start -> spin"],
    )
    quick = make_workflow({"start": "manual.trigger", "one": "core.noop"}, ["start -> one"])
    results: dict[str, prana.Execution] = {}

    async def run(name: str, workflow: prana.Workflow) -> None:
        results[name] = await engine.run(workflow, name)

    async with prana.Engine(env={}) as engine, anyio.create_task_group() as group:
        group.start_soon(run, "runaway", runaway)
        group.start_soon(run, "quick", quick)
    failed = results["runaway"]
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "expression_error"
    assert failed.error.node_key == "spin"
    assert "Limits.template_iterations" in failed.error.message
    assert results["quick"].status == "completed"
