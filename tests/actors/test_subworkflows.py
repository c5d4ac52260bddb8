"""Sub-workflows: workflow.execute in sync and fire_and_forget modes (DESIGN §5.6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

T0 = 1_900_000_000.0


def doubler() -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "double": ("data.set", {"values": {"doubled": "{{ input.n * 2 }}"}}),
        },
        ["start -> double"],
        id="doubler",
    )


def caller(params: dict[str, Any], *, id: str = "caller", **settings: Any) -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "call": {"type": "workflow.execute", "params": params, **settings},
            "after": "core.noop",
        },
        ["start -> call", "call -> after"],
        id=id,
    )


async def test_a_sync_child_runs_and_its_output_becomes_the_nodes() -> None:
    parent = caller({"workflow": "doubler", "input": {"n": "{{ input }}"}})
    async with prana.Engine(workflows=[doubler()], env={}) as engine:
        result = await engine.run(parent, 21)
        (child,) = await engine.list_executions(workflow="doubler")
    assert result.status == "completed"
    assert result.order == ["start", "call", "after"]
    assert result.outputs["call"] == {"doubled": 42}
    assert result.output == {"doubled": 42}
    assert child.status == "completed"
    assert (child.parent_execution_id, child.root_execution_id, child.mode) == (
        result.id,
        result.id,
        "sync",
    )
    assert child.input == {"n": 21}


async def test_a_started_execution_s_result_follows_its_sync_child_to_the_end() -> None:
    # As run() does: waiting for a sync child that is still moving is not a stop.
    parent = caller({"workflow": "doubler", "input": {"n": "{{ input }}"}})
    async with prana.Engine(workflows=[doubler()], env={}) as engine:
        handle = await engine.start(parent, 4)
        result = await handle.result()
    assert result.status == "completed"
    assert result.order == ["start", "call", "after"]
    assert result.output == {"doubled": 8}


async def test_fire_and_forget_completes_at_once_with_the_childs_id() -> None:
    waits = make_workflow(
        {"start": "manual.trigger", "hold": "wait.webhook"}, ["start -> hold"], id="waits"
    )
    parent = caller({"workflow": "waits", "mode": "fire_and_forget"})
    async with prana.Engine(workflows=[waits], env={}) as engine:
        result = await engine.run(parent, {"x": 1})
        child_id = result.outputs["call"]["execution_id"]
        child = await engine.get(child_id)
        assert result.status == "completed"
        assert result.outputs["call"] == {"execution_id": child_id, "workflow": "waits"}
        assert child.status == "suspended"  # saved before the parent went on
        assert (child.parent_execution_id, child.mode, child.input) == (
            result.id,
            "fire_and_forget",
            {"x": 1},
        )
        done = await engine.resume_token(child.suspensions[0].token or "", {"ok": True})
    assert done.status == "completed"


async def test_a_failed_child_fails_the_node_and_on_error_can_route_it() -> None:
    failing = make_workflow(
        {"start": "manual.trigger", "boom": ("core.fail", {"message": "no stock"})},
        ["start -> boom"],
        id="failing",
    )
    stops = caller({"workflow": "failing"})
    routes = make_workflow(
        {
            "start": "manual.trigger",
            "call": {
                "type": "workflow.execute",
                "params": {"workflow": "failing"},
                "settings": {"on_error": "error_port"},
            },
            "after": "core.noop",
            "handle": "core.noop",
        },
        ["start -> call", "call -> after", "call.error -> handle"],
        id="routes",
    )
    async with prana.Engine(workflows=[failing], env={}) as engine:
        stopped = await engine.run(stops)
        routed = await engine.run(routes)
    assert stopped.status == "failed"
    assert stopped.error is not None
    assert stopped.error.code == "child_failed"
    assert stopped.error.node_key == "call"
    assert "no stock" in stopped.error.message
    assert stopped.error.details["error"]["code"] == "workflow_error"
    assert routed.status == "completed"
    assert routed.order == ["start", "call", "handle"]
    assert routed.outputs["handle"]["code"] == "child_failed"


async def test_children_nest_and_record_their_root() -> None:
    middle = caller({"workflow": "doubler", "input": "{{ input }}"}, id="middle")
    top = caller({"workflow": "middle", "input": {"n": "{{ input }}"}}, id="top")
    async with prana.Engine(workflows=[doubler(), middle], env={}) as engine:
        result = await engine.run(top, 5)
        (mid,) = await engine.list_executions(workflow="middle")
        (leaf,) = await engine.list_executions(workflow="doubler")
    assert result.output == {"doubled": 10}
    assert (mid.parent_execution_id, mid.root_execution_id) == (result.id, result.id)
    assert (leaf.parent_execution_id, leaf.root_execution_id) == (mid.id, result.id)


async def test_sync_children_in_parallel_branches_each_complete_their_node() -> None:
    parent = make_workflow(
        {
            "start": "manual.trigger",
            "left": ("workflow.execute", {"workflow": "doubler", "input": {"n": 1}}),
            "right": ("workflow.execute", {"workflow": "doubler", "input": {"n": 2}}),
            "join": "data.merge",
        },
        ["start -> left", "start -> right", "left -> join", "right -> join"],
        id="fan",
        settings={"concurrency": 2},
    )
    async with prana.Engine(workflows=[doubler()], env={}) as engine:
        result = await engine.run(parent)
        children = await engine.list_executions(workflow="doubler")
    assert result.status == "completed"
    assert result.outputs["left"] == {"doubled": 2}
    assert result.outputs["right"] == {"doubled": 4}
    assert len(children) == 2


async def test_a_child_that_waits_suspends_its_parent_until_it_ends() -> None:
    approval = make_workflow(
        {"start": "manual.trigger", "approve": "wait.webhook"}, ["start -> approve"], id="approval"
    )
    parent = caller({"workflow": "approval"})
    async with prana.Engine(workflows=[approval], env={}) as engine:
        waiting = await engine.run(parent)
        (child,) = await engine.list_executions(workflow="approval")
        assert waiting.status == "suspended"
        assert [(s.node_key, s.kind, s.child_execution_id) for s in waiting.suspensions] == [
            ("call", "workflow", child.id)
        ]
        with pytest.raises(prana.InvalidTransition, match="waits for its child execution"):
            await engine.resume(waiting.id, {"forged": True})
        await engine.resume_token(child.suspensions[0].token or "", {"approved": True})
        done = await engine.wait(waiting.id)
    assert done.status == "completed"
    assert done.output == {"approved": True}


async def test_cancelling_a_parent_cancels_its_sync_child() -> None:
    approval = make_workflow(
        {"start": "manual.trigger", "approve": "wait.webhook"}, ["start -> approve"], id="approval"
    )
    async with prana.Engine(workflows=[approval], env={}) as engine:
        waiting = await engine.run(caller({"workflow": "approval"}))
        (child,) = await engine.list_executions(workflow="approval")
        cancelled = await engine.cancel(waiting.id, "customer gave up")
        with anyio.fail_after(5):
            child_now = await engine.wait(child.id)
    assert cancelled.status == "cancelled"
    assert cancelled.error is not None
    assert cancelled.error.message == "customer gave up"
    assert [(r.node_key, r.status) for r in cancelled.node_runs] == [
        ("start", "completed"),
        ("call", "cancelled"),
    ]
    assert child_now.status == "cancelled"
    assert child_now.error is not None
    assert child_now.error.message == f"parent execution {waiting.id} was cancelled"


async def test_a_workflow_that_calls_itself_stops_at_the_depth_limit() -> None:
    recursive = caller({"workflow": "recursive", "input": "{{ input + 1 }}"}, id="recursive")
    async with prana.Engine(workflows=[recursive], env={}, max_depth=3) as engine:
        result = await engine.run(recursive, 0)
        executions = await engine.list_executions(workflow="recursive")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "child_failed"
    # Depth 0 to 3 started; the one at depth 3 could not start a fourth level.
    assert len(executions) == 4
    deepest = [e for e in executions if e.input == 3]
    assert deepest[0].error is not None
    assert deepest[0].error.code == "depth_limit"
    assert "past this engine's limit of 3" in deepest[0].error.message


async def test_an_unknown_workflow_fails_the_node_with_a_clear_error() -> None:
    async with prana.Engine(env={}) as engine:
        result = await engine.run(caller({"workflow": "nowhere"}))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "unknown_workflow"
    assert "engine.register" in result.error.message


async def test_a_bad_mode_is_reported_when_the_workflow_loads() -> None:
    with pytest.raises(prana.WorkflowValidationError, match="mode must be 'sync' or"):
        caller({"workflow": "doubler", "mode": "async"})


async def test_a_parent_waiting_on_disk_hears_of_its_child_in_a_new_engine(
    tmp_path: Path,
) -> None:
    approval = make_workflow(
        {"start": "manual.trigger", "approve": "wait.webhook"}, ["start -> approve"], id="approval"
    )
    clock = VirtualClock(start=T0)
    path = tmp_path / "prana.db"
    async with open_engine(path=path, clock=clock, workflows=[approval]) as engine:
        waiting = await engine.run(caller({"workflow": "approval"}))
        (child,) = await engine.list_executions(workflow="approval")
    assert waiting.status == "suspended"
    async with open_engine(path=path, clock=clock) as engine:
        await engine.resume_token(child.suspensions[0].token or "", "yes")
        done = await engine.wait(waiting.id)
    assert done.status == "completed"
    assert done.output == "yes"


@pytest.mark.parametrize("restart", [False, True])
async def test_a_node_timeout_bounds_its_wait_for_a_sync_child(
    tmp_path: Path, restart: bool
) -> None:
    # The child waits for an answer that never comes: when the node's timeout passes
    # (in the same engine, or in the next one), the child is cancelled and the node
    # fails with 'timeout', which its on_error routes like any failure.
    approval = make_workflow(
        {"start": "manual.trigger", "approve": "wait.webhook"}, ["start -> approve"], id="approval"
    )
    parent = make_workflow(
        {
            "start": "manual.trigger",
            "call": {
                "type": "workflow.execute",
                "params": {"workflow": "approval"},
                "settings": {"timeout": "1h", "on_error": "error_port"},
            },
            "after": "core.noop",
            "late": ("data.set", {"values": {"late": "{{ input.code }}"}}),
        },
        ["start -> call", "call -> after", "call.error -> late"],
        id="parent",
    )
    clock = VirtualClock(start=T0)
    path = tmp_path / "prana.db"
    async with open_engine(path=path, clock=clock, workflows=[approval]) as engine:
        waiting = await engine.run(parent)
        (child,) = await engine.list_executions(workflow="approval")
        assert [(s.node_key, s.wake_at) for s in waiting.suspensions] == [("call", T0 + 3600)]
        clock.set(T0 + 3599)
        assert (await engine.get(waiting.id)).status == "suspended"
        if not restart:
            clock.set(T0 + 3600)
            done = await engine.wait(waiting.id)
            child_now = await engine.wait(child.id)
    if restart:
        clock.set(T0 + 3600)
        async with open_engine(path=path, clock=clock, workflows=[approval]) as engine:
            done = await engine.wait(waiting.id)
            child_now = await engine.wait(child.id)
    assert done.status == "completed"
    assert done.order == ["start", "call", "late"]
    assert done.outputs["late"] == {"late": "timeout"}
    (call,) = done.runs_of("call")
    assert call.status == "failed"
    assert call.error is not None
    assert call.error.message == (
        f"node 'call' waited longer than its timeout (3600 s) for child execution {child.id}, "
        "which was cancelled"
    )
    assert child_now.status == "cancelled"
    assert child_now.error is not None
    assert child_now.error.message == "its parent's node 'call' timed out after 3600 s"
