"""Requests (resume, cancel, pause) work whatever moment they arrive at, with the
documented errors only (DESIGN §7: live executions have one owner)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

import prana
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

T0 = 1_900_000_000.0


def approval_workflow() -> prana.Workflow:
    return make_workflow(
        {"start": "manual.trigger", "approval": "wait.webhook", "after": "core.noop"},
        ["start -> approval", "approval -> after"],
    )


def engine_on(store: str, **options: Any) -> AbstractAsyncContextManager[prana.Engine]:
    if store == "memory":
        return prana.Engine(env={}, **options)
    return open_engine(**options)


def failing_actions() -> tuple[prana.ActionRegistry, list[int]]:
    """``test.flaky`` fails every attempt, recording it."""
    actions = prana.ActionRegistry()
    attempts: list[int] = []

    @actions.action("test.flaky")
    async def flaky(ctx: prana.NodeContext) -> Any:
        attempts.append(ctx.attempt)
        raise ConnectionResetError("the peer went away")

    return actions, attempts


def retrying(actions: prana.ActionRegistry, delay: str) -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "call": {
                "type": "test.flaky",
                "settings": {"retry": {"max_attempts": 3, "backoff": "fixed", "delay": delay}},
            },
            "after": "core.noop",
        },
        ["start -> call", "call -> after"],
        actions=actions,
    )


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_resume_right_after_the_execution_says_it_waits_is_taken(store: str) -> None:
    async with engine_on(store) as engine:
        handle = await engine.start(approval_workflow())
        async for event in handle.events():
            if isinstance(event, prana.events.ExecutionSuspended):
                # The supervisor has published this, and is leaving memory.
                done = await engine.resume(handle.id, {"approved": True})
        again = await engine.get(handle.id)
    assert done.status == again.status == "completed"
    assert done.order == ["start", "approval", "after"]
    assert done.output == {"approved": True}


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_two_resumes_at_once_one_is_taken_the_other_refused(store: str) -> None:
    outcomes: list[Any] = []
    async with engine_on(store) as engine:
        waiting = await engine.run(approval_workflow())

        async def resume(data: str) -> None:
            try:
                outcomes.append(await engine.resume(waiting.id, data))
            except prana.InvalidTransition as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(resume, "first")
            group.start_soon(resume, "second")
        done = await engine.get(waiting.id)
    taken = [outcome for outcome in outcomes if isinstance(outcome, prana.Execution)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, prana.InvalidTransition)]
    assert len(taken) == len(refused) == 1
    assert done.status == "completed"
    assert done.output == taken[0].output
    assert [run.node_key for run in done.node_runs] == ["start", "approval", "after"]


async def test_a_cancel_while_a_retry_waits_in_memory_stops_it_before_the_next_attempt() -> None:
    actions, attempts = failing_actions()
    clock = VirtualClock(start=T0)
    async with prana.Engine(actions=actions, clock=clock, env={}) as engine:
        handle = await engine.start(retrying(actions, "1s"))
        async for event in handle.events():
            if isinstance(event, prana.events.NodeRetrying):
                break  # the first attempt failed; the next waits a second, in memory
        cancelled = await engine.cancel(handle.id, "enough")
        clock.advance(10)
        await anyio.wait_all_tasks_blocked()
    assert cancelled.status == "cancelled"
    assert cancelled.error is not None
    assert cancelled.error.message == "enough"
    assert attempts == [1]  # the second attempt never started
    assert [(run.node_key, run.status) for run in cancelled.node_runs][-1] == ("call", "cancelled")


async def test_pause_and_cancel_while_a_durable_retry_waits() -> None:
    actions, attempts = failing_actions()
    clock = VirtualClock(start=T0)
    async with open_engine(actions=actions, clock=clock) as engine:
        waiting = await engine.run(retrying(actions, "1h"))
        assert waiting.status == "suspended"  # the backoff is a durable timer
        paused = await engine.pause(waiting.id)
        assert paused.status == "paused"
        clock.advance(3600)  # the backoff ends while paused: nothing runs
        await anyio.wait_all_tasks_blocked()
        assert attempts == [1]
        unpaused = await engine.unpause(waiting.id)  # the due retry runs now
        assert attempts == [1, 2]
        assert unpaused.status == "suspended"  # waiting for the third attempt
        cancelled = await engine.cancel(waiting.id)
        clock.advance(3600)
        await anyio.wait_all_tasks_blocked()
    assert cancelled.status == "cancelled"
    assert attempts == [1, 2]


async def test_cancelling_a_parent_as_its_child_ends_gives_one_documented_outcome() -> None:
    actions = prana.ActionRegistry()
    gate = anyio.Event()

    @actions.action("test.gate")
    async def gated(ctx: prana.NodeContext) -> Any:
        await gate.wait()
        return "child done"

    child = make_workflow(
        {"start": "manual.trigger", "work": "test.gate"},
        ["start -> work"],
        actions=actions,
        id="child",
    )
    parent = make_workflow(
        {
            "start": "manual.trigger",
            "call": ("workflow.execute", {"workflow": "child", "mode": "sync"}),
            "after": "core.noop",
        },
        ["start -> call", "call -> after"],
        id="parent",
    )
    outcomes: list[Any] = []
    async with prana.Engine(actions=actions, env={}, workflows=[child]) as engine:
        handle = await engine.start(parent)
        await anyio.wait_all_tasks_blocked()  # the child waits at its gate
        gate.set()  # the child ends now, and its parent hears of it ...
        try:
            outcomes.append(await engine.cancel(handle.id, "stop"))  # ... as this arrives
        except prana.InvalidTransition as exc:
            outcomes.append(exc)
        await engine.wait_idle()
        parent_now = await engine.get(handle.id)
        (child_run,) = await engine.list_executions(workflow="child")
    (outcome,) = outcomes
    if isinstance(outcome, prana.InvalidTransition):
        assert parent_now.status == "completed"  # the child's end came first
    else:
        assert outcome.status == parent_now.status == "cancelled"
    assert child_run.status == "completed"


async def test_a_resume_and_a_cancel_at_once_leave_one_consistent_outcome() -> None:
    outcomes: list[Any] = []
    async with open_engine() as engine:
        waiting = await engine.run(approval_workflow())

        async def attempt(request: Any) -> None:
            try:
                outcomes.append(await request)
            except prana.InvalidTransition as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(attempt, engine.resume(waiting.id, "go"))
            group.start_soon(attempt, engine.cancel(waiting.id, "no"))
        final = await engine.get(waiting.id)
    statuses = {outcome.status for outcome in outcomes if isinstance(outcome, prana.Execution)}
    assert final.status in ("completed", "cancelled")
    assert final.status in statuses
    assert all(
        isinstance(outcome, (prana.Execution, prana.InvalidTransition)) for outcome in outcomes
    )


async def test_a_request_for_an_execution_waiting_on_virtual_time_is_taken_once_due() -> None:
    # A wait with a deadline, resumed by its timer while a resume arrives: one wins.
    clock = VirtualClock(start=T0)
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "approval": ("wait.webhook", {"timeout": "1m"}),
            "after": "core.noop",
        },
        ["start -> approval", "approval -> after", "approval.timeout -> after"],
    )
    async with open_engine(clock=clock) as engine:
        handle = await engine.start(workflow)
        waiting = await handle.result()
        assert waiting.status == "suspended"
        clock.advance(60)  # the timer fires ...
        try:
            done = await engine.resume(waiting.id, "late")  # ... as the resume arrives
        except prana.InvalidTransition:
            done = await engine.wait(waiting.id)
    assert done.status == "completed"
    assert [run.node_key for run in done.node_runs] == ["start", "approval", "after"]


async def test_a_resume_without_data_ends_a_timer_s_wait_as_the_timer_would() -> None:
    clock = VirtualClock(start=T0)
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "pause": ("wait.interval", {"duration": "1h"}),
            "after": "core.noop",
        },
        ["start -> pause", "pause -> after"],
    )
    async with open_engine(clock=clock) as engine:
        waiting = await engine.run(workflow, {"order": 7})
        done = await engine.resume(waiting.id)  # early, without data
    assert done.status == "completed"
    assert done.output == {"order": 7}  # the node's input, passed on


@pytest.mark.parametrize("timer_fired", [False, True])
async def test_a_late_resume_of_a_timed_out_webhook_wait_is_refused(
    tmp_path: Any, timer_fired: bool
) -> None:
    clock = VirtualClock(start=T0)
    path = tmp_path / "prana.db"
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "approval": ("wait.webhook", {"timeout": "1m"}),
            "yes": "core.noop",
            "late": ("data.set", {"values": {"timed_out": True}}),
        },
        ["start -> approval", "approval -> yes", "approval.timeout -> late"],
    )
    async with open_engine(path=path, clock=clock) as engine:
        waiting = await engine.run(workflow, {"order": 7})
        (suspension,) = waiting.suspensions
    clock.advance(120)  # past the timeout, with no engine running
    # An engine that recovers fires the timer; one that does not (a command) did not.
    async with open_engine(path=path, clock=clock, recover=timer_fired) as engine:
        await anyio.wait_all_tasks_blocked()
        # Refused either way: the wait timed out (or, once its timer ended it, the
        # token is gone).
        refusal = "token not found" if timer_fired else r"timed out .* before this resume"
        with pytest.raises((prana.InvalidTransition, prana.ExecutionNotFound), match=refusal):
            await engine.resume_token(suspension.token or "", {"approved": True})
        done = await engine.wait(waiting.id)
    assert done.status == "completed"
    assert done.order == ["start", "approval", "late"]
    assert done.output == {"timed_out": True}
