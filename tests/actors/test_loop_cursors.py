"""A ``core.for_each`` whose cursor is gone when its loop comes back fails with a
clear error, not a crash; a ``workflow.execute`` must name a workflow."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import prana
from prana.testing import open_engine
from tests.helpers import make_workflow


async def test_a_for_each_that_lost_its_cursor_fails_saying_so(tmp_path: Path) -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "each": ("core.for_each", {"items": "{{ input }}"}),
            "ask": "wait.webhook",
            "after": "core.noop",
        },
        ["start -> each", "each.loop -> ask", "ask -> each", "each.done -> after"],
    )
    db = tmp_path / "prana.db"
    async with open_engine(path=db) as engine:
        waiting = await engine.run(workflow, ["a", "b"])
    assert waiting.status == "suspended"
    with sqlite3.connect(db) as connection:  # something outside prana damages it
        connection.execute("DELETE FROM node_context_fields WHERE node_key = 'each'")
    connection.close()
    async with open_engine(path=db) as engine:
        done = await engine.resume(waiting.id, "yes")
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.code == "cursor_lost"
    assert done.error.node_key == "each"
    assert "came back from its loop without its cursor" in done.error.message


def test_a_workflow_execute_without_a_workflow_id_is_refused_at_load_time() -> None:
    with pytest.raises(prana.WorkflowValidationError) as refused:
        make_workflow(
            {"start": "manual.trigger", "child": ("workflow.execute", {"workflow": " "})},
            ["start -> child"],
        )
    assert "nodes[1].params.workflow: is empty: give the id of the workflow to run" in str(
        refused.value
    )


async def test_a_workflow_id_that_renders_empty_fails_the_node() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "child": ("workflow.execute", {"workflow": "{{ input.name }}"}),
        },
        ["start -> child"],
    )
    async with prana.Engine(env={}) as engine:
        result = await engine.run(workflow, {"name": ""})
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "invalid_params"
    assert "the workflow parameter is empty" in result.error.message
