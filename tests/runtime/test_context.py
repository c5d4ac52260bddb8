"""NodeContext: what an action reads of it, copied when it may change it."""

from __future__ import annotations

import copy
from typing import Any

import attrs

import prana


def context(**fields: Any) -> prana.NodeContext:
    return prana.NodeContext(
        execution_id="e", workflow_id="w", node_key="n", node_type="t", run_index=0, **fields
    )


def test_a_context_gives_its_fields_as_they_were_given() -> None:
    data = {"rows": [1]}
    ctx = context(input=data, inputs={"main": data}, deliveries={"main": (data,)})
    assert ctx.input is data
    assert ctx.inputs["main"] is data
    assert ctx.deliveries["main"][0] is data
    assert not ctx.copies_on_read


def test_a_context_that_copies_on_read_copies_each_field_it_is_read_once() -> None:
    copied: list[Any] = []

    def copier(value: Any) -> Any:
        copied.append(value)
        return copy.deepcopy(value)

    data, trigger = {"rows": [1]}, {"kind": "manual", "data": {"x": 1}}
    ctx = context(input=data, trigger=trigger, vars={"v": [1]}).copying_on_read(copier)
    assert ctx.copies_on_read
    ctx.input["rows"].append(2)
    assert ctx.input == {"rows": [1, 2]}  # the same copy, read again
    assert data == {"rows": [1]}
    assert copied == [data]  # nothing else read, nothing else copied
    assert ctx.trigger == trigger
    assert ctx.trigger is not trigger
    assert len(copied) == 2


def test_an_evolved_context_still_copies_on_read() -> None:
    ctx = context(input={"a": 1}).copying_on_read(copy.deepcopy)
    data = {"b": [2]}
    evolved = attrs.evolve(ctx, input=data)
    assert evolved.input == data
    assert evolved.input is not data


def test_a_contexts_repr_names_its_fields_as_they_are_read() -> None:
    shown = repr(context(input={"a": 1}).copying_on_read(copy.deepcopy))
    assert "input={'a': 1}" in shown
    assert "_input" not in shown
    assert "copy" not in shown
