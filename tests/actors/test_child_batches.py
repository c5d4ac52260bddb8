"""workflow.execute over a list (batch_mode: single): one child per item, a few at a
time, outputs in item order, through failures, timeouts, cancels and restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import prana
import prana.actors._children
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

T0 = 1_900_000_000.0


def sleeper() -> prana.Workflow:
    """Waits ``input.delay`` seconds, then outputs ``{"item": input.name}``."""
    return make_workflow(
        {
            "start": "manual.trigger",
            "pause": ("wait.interval", {"duration": "{{ input.delay }}s"}),
            "done": ("data.set", {"values": {"item": "{{ trigger.data.name }}"}}),
        },
        ["start -> pause", "pause -> done"],
        id="sleeper",
    )


def approval() -> prana.Workflow:
    return make_workflow(
        {"start": "manual.trigger", "approve": "wait.webhook"}, ["start -> approve"], id="approval"
    )


def batch(params: dict[str, Any], **settings: Any) -> prana.Workflow:
    """A batch node whose errors go to ``handle``."""
    return make_workflow(
        {
            "start": "manual.trigger",
            "each": {
                "type": "workflow.execute",
                "params": {"batch_mode": "single", **params},
                "settings": {"on_error": "error_port", **settings},
            },
            "after": "core.noop",
            "handle": "core.noop",
        },
        ["start -> each", "each -> after", "each.error -> handle"],
        id="batch",
    )


async def children_of(engine: prana.Engine, workflow: str) -> list[prana.Execution]:
    return sorted(
        await engine.list_executions(workflow=workflow),
        key=lambda child: (child.started_at or 0, repr(child.input)),
    )


async def waiting_children(engine: prana.Engine, count: int) -> list[prana.Execution]:
    """The children of workflow approval, once ``count`` of them wait for an answer."""
    with anyio.fail_after(10):
        while True:
            children = await children_of(engine, "approval")
            waiting = [child for child in children if child.status == "suspended"]
            if len(waiting) >= count:
                return [await engine.get(child.id) for child in waiting]
            await anyio.lowlevel.checkpoint()


async def test_one_child_per_item_a_few_at_a_time_outputs_in_item_order() -> None:
    items = [
        {"name": name, "delay": delay} for name, delay in zip("abcde", [3, 1, 2, 1, 1], strict=True)
    ]
    clock = VirtualClock(start=T0, autojump=True)
    async with prana.Engine(workflows=[sleeper()], clock=clock, env={}) as engine:
        result = await engine.run(batch({"workflow": "sleeper", "concurrency": 2}), items)
        children = await children_of(engine, "sleeper")
    assert result.status == "completed"
    assert result.outputs["each"] == [{"item": name} for name in "abcde"]
    assert result.output == result.outputs["each"]
    assert sorted(child.input["name"] for child in children) == list("abcde")
    assert all(child.parent_execution_id == result.id for child in children)
    # Never more than two at once: a and b, then c when b ends (t=1), then d and e
    # when a and c end (t=3); all done at t=4.
    spans = [(c.started_at or 0.0, c.finished_at or 0.0) for c in children]
    for moment, _ in spans:
        assert sum(start <= moment < end for start, end in spans) <= 2
    assert {child.input["name"]: (child.started_at or 0) - T0 for child in children} == {
        "a": 0,
        "b": 0,
        "c": 1,
        "d": 3,
        "e": 3,
    }
    assert max(end for _, end in spans) - T0 == 4


async def test_items_come_from_the_items_param_and_an_empty_list_outputs_an_empty_one() -> None:
    doubler = make_workflow(
        {
            "start": "manual.trigger",
            "double": ("data.set", {"values": {"doubled": "{{ input * 2 }}"}}),
        },
        ["start -> double"],
        id="doubler",
    )
    async with prana.Engine(workflows=[doubler], env={}) as engine:
        doubled = await engine.run(
            batch({"workflow": "doubler", "items": "{{ input.numbers }}"}), {"numbers": [1, 2, 3]}
        )
        nothing = await engine.run(batch({"workflow": "doubler"}), [])
    assert doubled.outputs["each"] == [{"doubled": 2}, {"doubled": 4}, {"doubled": 6}]
    assert (nothing.status, nothing.outputs["each"]) == ("completed", [])


async def test_a_child_that_fails_fails_the_node_naming_its_item_and_cancels_the_rest() -> None:
    picky = make_workflow(
        {
            "start": "manual.trigger",
            "check": ("logic.if", {"condition": "{{ input.ok }}"}),
            "wait": "wait.webhook",
            "boom": ("core.fail", {"message": "not ok", "code": "refused"}),
        },
        ["start -> check", "check.true -> wait", "check.false -> boom"],
        id="picky",
    )
    async with prana.Engine(workflows=[picky], env={}) as engine:
        result = await engine.run(
            batch({"workflow": "picky"}),
            [{"ok": True}, {"ok": False}, {"ok": True}],
        )
        with anyio.fail_after(5):
            children = [await engine.wait(c.id) for c in await children_of(engine, "picky")]
    assert result.status == "completed"
    assert result.order == ["start", "each", "handle"]
    error = result.outputs["handle"]
    assert error["code"] == "child_failed"
    assert error["message"].startswith("item 1 of the batch: child execution ")
    assert "not ok" in error["message"]
    assert (error["details"]["item"], error["details"]["error"]["code"]) == (1, "refused")
    # The child of item 0 was waiting: cancelled, saying why.
    by_item = {(child.input["ok"], child.status) for child in children}
    assert by_item == {(True, "cancelled"), (False, "failed")}
    cancelled = next(child for child in children if child.status == "cancelled")
    assert cancelled.error is not None
    assert "item 1 of the batch" in cancelled.error.message


async def test_a_node_timeout_bounds_the_whole_batch() -> None:
    clock = VirtualClock(start=T0, autojump=True)
    async with prana.Engine(workflows=[approval()], clock=clock, env={}) as engine:
        result = await engine.run(
            batch({"workflow": "approval", "concurrency": 1}, timeout="1h"),
            [1, 2],
        )
        (child,) = await children_of(engine, "approval")  # the second never started
        with anyio.fail_after(5):
            child = await engine.wait(child.id)
    assert result.order == ["start", "each", "handle"]
    assert result.outputs["handle"]["code"] == "timeout"
    assert "batch of 2 children" in result.outputs["handle"]["message"]
    assert child.status == "cancelled"


async def test_cancelling_the_parent_cancels_the_children_of_its_batch() -> None:
    async with prana.Engine(workflows=[approval()], env={}) as engine:
        handle = await engine.start(batch({"workflow": "approval"}), [1, 2])
        await waiting_children(engine, 2)
        cancelled = await engine.cancel(handle.id, "not needed")
        with anyio.fail_after(5):
            children = [await engine.wait(c.id) for c in await children_of(engine, "approval")]
    assert cancelled.status == "cancelled"
    assert [child.status for child in children] == ["cancelled", "cancelled"]


async def test_a_batch_carries_on_in_a_new_engine_without_starting_a_child_twice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    clock = VirtualClock(start=T0)
    async with open_engine(path=path, clock=clock, workflows=[approval()]) as engine:
        handle = await engine.start(batch({"workflow": "approval", "concurrency": 2}), [1, 2, 3])
        await waiting_children(engine, 2)
    # The engine stopped with the batch in flight: the next one carries it on, finds
    # the two children it had started, and starts the third once one of them ends.
    async with open_engine(path=path, clock=clock) as engine:
        first, second = await waiting_children(engine, 2)
        await engine.resume_token(first.suspensions[0].token or "", "one")
        await engine.resume_token(second.suspensions[0].token or "", "two")
        (third,) = [c for c in await waiting_children(engine, 1) if c.input == 3]
        await engine.resume_token(third.suspensions[0].token or "", "three")
        with anyio.fail_after(10):
            done = await engine.wait(handle.id)
        children = await children_of(engine, "approval")
    assert done.status == "completed"
    assert done.outputs["each"] == ["one", "two", "three"]
    assert [child.input for child in children] == [1, 2, 3]  # none started twice
    assert (first.input, second.input) == (1, 2)


async def test_fire_and_forget_starts_every_child_and_outputs_their_ids() -> None:
    async with prana.Engine(workflows=[approval()], env={}) as engine:
        result = await engine.run(
            batch({"workflow": "approval", "mode": "fire_and_forget"}), ["x", "y"]
        )
        children = {c.id: c for c in await engine.list_executions(workflow="approval")}
    assert result.status == "completed"
    ids = [entry["execution_id"] for entry in result.outputs["each"]]
    assert [entry["workflow"] for entry in result.outputs["each"]] == ["approval", "approval"]
    assert [children[i].input for i in ids] == ["x", "y"]
    assert {child.mode for child in children.values()} == {"fire_and_forget"}
    assert {child.status for child in children.values()} == {"suspended"}


async def test_a_batch_without_a_list_fails_the_node_saying_what_to_give() -> None:
    async with prana.Engine(workflows=[approval()], env={}) as engine:
        result = await engine.run(batch({"workflow": "approval"}), {"not": "a list"})
    assert result.order == ["start", "each", "handle"]
    assert result.outputs["handle"]["code"] == "invalid_params"
    assert result.outputs["handle"]["message"] == (
        "batch_mode 'single' starts one child per item of a list, but the node's input is "
        "an object: give a list as items (or as the node's input)"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"batch_mode": "many"}, "batch_mode must be 'single'"),
        ({"batch_mode": "single", "concurrency": 0}, "a whole number of at least 1, not 0"),
        ({"items": [1, 2]}, "only with batch_mode: single"),
        ({"concurrency": 2}, "concurrency bounds the children of batch_mode: single"),
        ({"batch_mode": "single", "input": {"a": 1}}, "each child's input is its item"),
    ],
)
async def test_bad_batch_params_are_reported_when_the_workflow_loads(
    params: dict[str, Any], message: str
) -> None:
    with pytest.raises(prana.WorkflowValidationError, match=message):
        make_workflow(
            {
                "start": "manual.trigger",
                "each": ("workflow.execute", {"workflow": "approval", **params}),
            },
            ["start -> each"],
        )


async def test_a_batch_hears_of_a_child_another_engine_ended_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child ended by another engine cannot tell this one's batch directly: the
    # batch reads its children's state from the store every WATCH_POLL seconds.
    monkeypatch.setattr(prana.actors._children, "WATCH_POLL", 0.01)
    path = tmp_path / "prana.db"
    clock = VirtualClock(start=T0)
    async with open_engine(path=path, clock=clock, workflows=[approval()]) as engine:
        handle = await engine.start(batch({"workflow": "approval"}), ["a", "b"])
        first, second = await waiting_children(engine, 2)
        async with open_engine(path=path, clock=clock, recover=False) as other:
            for child in (first, second):
                await other.resume_token(child.suspensions[0].token or "", child.input * 2)
        with anyio.fail_after(5):
            done = await engine.wait(handle.id)
    assert done.status == "completed"
    assert done.outputs["each"] == ["aa", "bb"]


async def test_a_retry_of_a_batch_runs_again_only_the_items_that_did_not_complete() -> None:
    calls: list[str] = []
    actions = prana.ActionRegistry()

    @actions.action("test.flaky")
    def flaky(ctx: prana.NodeContext) -> Any:
        calls.append(ctx.input)
        if ctx.input == "b" and calls.count("b") == 1:
            raise prana.NodeError("not yet", code="busy")
        return ctx.input.upper()

    child = make_workflow(
        {"start": "manual.trigger", "work": "test.flaky"},
        ["start -> work"],
        actions=actions,
        id="flaky",
    )
    clock = VirtualClock(start=T0, autojump=True)
    async with prana.Engine(workflows=[child], actions=actions, clock=clock, env={}) as engine:
        result = await engine.run(
            batch({"workflow": "flaky"}, retry={"max_attempts": 2, "delay": "1s"}),
            ["a", "b", "c"],
        )
        children = await engine.list_executions(workflow="flaky")
    assert result.status == "completed"
    assert result.outputs["each"] == ["A", "B", "C"]
    assert sorted(calls) == ["a", "b", "b", "c"]  # a and c completed the first time
    assert [r.status for r in result.runs_of("each")] == ["retried", "completed"]
    assert sorted(c.status for c in children) == ["completed"] * 3 + ["failed"]


async def test_a_retried_fire_and_forget_batch_starts_no_child_twice() -> None:
    # The first attempt starts item 0's child, then cannot start item 1's (its input
    # does not fit the child's trigger); the retry finds item 0's child and starts
    # only item 1's.
    listener = make_workflow(
        {"on": ("event.trigger", {"event": "job"}), "hold": "wait.webhook"},
        ["on -> hold"],
        id="listener",
    )
    actions = prana.ActionRegistry()

    @actions.action("test.spawn")
    def spawn(ctx: prana.NodeContext) -> prana.ExecuteWorkflow:
        second = "not an event" if ctx.attempt == 1 else {"event": "job", "data": 2}
        return prana.ExecuteWorkflow(
            workflow="listener",
            mode="fire_and_forget",
            items=[{"event": "job", "data": 1}, second],
        )

    parent = make_workflow(
        {
            "start": "manual.trigger",
            "spawn": {
                "type": "test.spawn",
                "settings": {"retry": {"max_attempts": 2, "delay": "1s"}},
            },
        },
        ["start -> spawn"],
        actions=actions,
    )
    clock = VirtualClock(start=T0, autojump=True)
    async with prana.Engine(workflows=[listener], actions=actions, clock=clock, env={}) as engine:
        result = await engine.run(parent)
        children = await engine.list_executions(workflow="listener")
    assert result.status == "completed"
    first, second = result.outputs["spawn"]
    assert len(children) == 2
    assert {child.id for child in children} == {first["execution_id"], second["execution_id"]}
    assert [r.status for r in result.runs_of("spawn")] == ["retried", "completed"]
