"""SIGKILL while a sync child runs, and after it ended but before its parent heard:
the next engine finishes both, starting no second child and running nothing twice
that had completed."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import prana
from prana.testing import kill_at
from tests.crash.retry_actions import actions


def workflows(log: Path) -> tuple[prana.Workflow, prana.Workflow]:
    child = prana.load_workflow(
        {
            "id": "child",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "work", "type": "crash.record", "params": {"log": str(log)}},
                {"key": "done", "type": "data.set", "params": {"values": {"n": "{{ input.n }}"}}},
            ],
            "connections": [{"from": "start", "to": "work"}, {"from": "work", "to": "done"}],
        },
        actions=actions,
    )
    parent = prana.load_workflow(
        {
            "id": "parent",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {
                    "key": "call",
                    "type": "workflow.execute",
                    "params": {"workflow": "child", "input": {"n": "{{ input }}"}},
                },
                {"key": "after", "type": "crash.record", "params": {"log": str(log)}},
            ],
            "connections": [{"from": "start", "to": "call"}, {"from": "call", "to": "after"}],
        },
        actions=actions,
    )
    return parent, child


@pytest.mark.single_backend("asyncio")
@pytest.mark.parametrize("when", ["started", "ended"])
async def test_killed_around_a_sync_child_the_next_engine_finishes_parent_and_child(
    tmp_path: Path, when: str
) -> None:
    db, log = tmp_path / "prana.db", tmp_path / "runs.log"
    parent, child = workflows(log)
    report = await anyio.to_thread.run_sync(
        lambda: kill_at(
            parent,
            db=db,
            node="work",
            when=when,  # type: ignore[arg-type]
            input=7,
            actions="tests.crash.retry_actions:actions",
            workflows=[child],
        )
    )
    assert report.killed, report.stderr
    parent_id = report.execution_id
    assert parent_id is not None
    async with prana.Engine(actions=actions, store=db, workflows=[child]) as engine:
        with anyio.fail_after(20):
            done = await engine.wait(parent_id)
        children = await engine.list_executions(workflow="child")
    assert done.status == "completed"
    assert done.order == ["start", "call", "after"]
    assert done.outputs["call"] == {"n": 7}
    assert len(children) == 1  # the node that ran again found its child
    (child_run,) = children
    assert child_run.status == "completed"
    assert child_run.parent_execution_id == parent_id
    lines = log.read_text().splitlines()
    work = [line for line in lines if line.startswith("work ")]
    # In flight at the kill: run again, with the same key. Completed: never again.
    assert set(work) == {f"work {child_run.id}:work:0"}
    assert len(work) == 1 if when == "ended" else len(work) <= 2
    assert [line for line in lines if line.startswith("after ")] == [f"after {parent_id}:after:0"]
