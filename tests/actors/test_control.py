"""Control of executions: cancel, pause, unpause, retry, workflow timeouts (DESIGN §5.7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from prana.testing import VirtualClock, open_engine
from tests.helpers import drive, make_workflow

T0 = 1_900_000_000.0


def gated_actions() -> tuple[prana.ActionRegistry, anyio.Event, list[str]]:
    """``test.gate`` waits for an event; ``test.count`` records each run's key."""
    actions = prana.ActionRegistry()
    gate = anyio.Event()
    ran: list[str] = []

    @actions.action("test.gate")
    async def gated(ctx: prana.NodeContext) -> Any:
        ran.append(ctx.node_key)
        await gate.wait()
        return ctx.input

    @actions.action("test.count")
    async def count(ctx: prana.NodeContext) -> Any:
        ran.append(ctx.node_key)
        return ctx.input

    return actions, gate, ran


def chain(actions: prana.ActionRegistry, **top: Any) -> prana.Workflow:
    return make_workflow(
        {"start": "manual.trigger", "slow": "test.gate", "next": "test.count"},
        ["start -> slow", "slow -> next"],
        actions=actions,
        **top,
    )


async def test_cancel_stops_a_running_execution_and_a_second_cancel_is_refused() -> None:
    actions, _, ran = gated_actions()
    seen: list[prana.events.Event] = []
    async with prana.Engine(actions=actions, env={}, middleware=[seen.append]) as engine:
        handle = await engine.start(chain(actions), 1)
        await anyio.wait_all_tasks_blocked()
        cancelled = await engine.cancel(handle.id, "not needed")
        with pytest.raises(
            prana.InvalidTransition, match="is cancelled; only an execution that has not ended"
        ):
            await engine.cancel(handle.id)
        with pytest.raises(prana.InvalidTransition, match="only a running or waiting"):
            await engine.pause(handle.id)
        again = await engine.get(handle.id)
    assert cancelled.status == "cancelled"
    assert cancelled.error is not None
    assert (cancelled.error.code, cancelled.error.message) == ("cancelled", "not needed")
    assert [(r.node_key, r.status) for r in cancelled.node_runs] == [
        ("start", "completed"),
        ("slow", "cancelled"),
    ]
    assert ran == ["slow"]
    # The refused requests changed nothing.
    assert (again.status, again.node_runs, again.error) == (
        cancelled.status,
        cancelled.node_runs,
        cancelled.error,
    )
    assert isinstance(seen[-1], prana.events.ExecutionCancelled)


async def test_cancel_a_waiting_execution_in_the_store_and_its_token_is_gone(
    tmp_path: Path,
) -> None:
    workflow = make_workflow(
        {"start": "manual.trigger", "approve": "wait.webhook"}, ["start -> approve"]
    )
    async with open_engine(path=tmp_path / "prana.db") as engine:
        waiting = await engine.run(workflow)
    token = waiting.suspensions[0].token or ""
    async with open_engine(path=tmp_path / "prana.db") as engine:
        cancelled = await engine.cancel(waiting.id)
        with pytest.raises(prana.ExecutionNotFound, match="resume token not found"):
            await engine.resume_token(token, {})
        stored = await engine.get(waiting.id)
    assert cancelled.status == stored.status == "cancelled"
    assert stored.suspensions == ()
    assert [(r.node_key, r.status) for r in stored.node_runs] == [
        ("start", "completed"),
        ("approve", "cancelled"),
    ]


async def test_pause_lets_the_running_node_finish_then_unpause_carries_on(
    tmp_path: Path,
) -> None:
    actions, gate, ran = gated_actions()
    seen: list[str] = []
    path = tmp_path / "prana.db"
    async with open_engine(
        actions=actions, path=path, middleware=[lambda e: seen.append(type(e).__name__)]
    ) as engine:
        handle = await engine.start(chain(actions), 1)
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as group:
            paused: list[prana.Execution] = []

            async def pause() -> None:
                paused.append(await engine.pause(handle.id))

            group.start_soon(pause)
            await anyio.wait_all_tasks_blocked()
            assert not paused  # waits for the running node
            gate.set()
        assert engine.live_count == 0  # a paused execution leaves memory
    (result,) = paused
    assert result.status == "paused"
    assert result.order == ["start", "slow"]
    assert ran == ["slow"]
    assert "ExecutionPaused" in seen
    async with open_engine(actions=actions, path=path) as engine:
        with pytest.raises(prana.InvalidTransition, match="is paused; only a running or waiting"):
            await engine.pause(handle.id)
        done = await engine.unpause(handle.id)
        with pytest.raises(prana.InvalidTransition, match="only a paused execution"):
            await engine.unpause(handle.id)
    assert done.status == "completed"
    assert done.order == ["start", "slow", "next"]
    assert ran == ["slow", "next"]


async def test_a_paused_execution_takes_resume_data_and_fires_due_timers_when_unpaused() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "hook": "wait.webhook",
            "timer": ("wait.interval", {"duration": "1h"}),
            "after_hook": "core.noop",
            "after_timer": "core.noop",
        },
        ["start -> hook", "start -> timer", "hook -> after_hook", "timer -> after_timer"],
        settings={"concurrency": 2},
    )
    clock = VirtualClock(start=T0)
    async with open_engine(clock=clock) as engine:
        waiting = await engine.run(workflow)
        paused = await engine.pause(waiting.id)
        resumed = await engine.resume(waiting.id, {"ok": 1}, node="hook")
        clock.advance(7200)
        await anyio.wait_all_tasks_blocked()
        still = await engine.get(waiting.id)
        done = await engine.unpause(waiting.id)
    assert paused.status == "paused"
    assert resumed.status == "paused"
    assert "after_hook" not in resumed.order  # routed, not run while paused
    assert still.status == "paused"
    assert [s.node_key for s in still.suspensions] == ["timer"]
    assert done.status == "completed"
    assert sorted(done.order) == sorted(["start", "hook", "timer", "after_hook", "after_timer"])


async def test_retry_runs_the_failed_node_again_and_keeps_completed_nodes(
    tmp_path: Path,
) -> None:
    actions = prana.ActionRegistry()
    calls: list[tuple[str, int, str]] = []

    @actions.action("test.flaky")
    async def flaky(ctx: prana.NodeContext) -> Any:
        calls.append((ctx.node_key, ctx.attempt, ctx.idempotency_key))
        if len([c for c in calls if c[0] == "flaky"]) == 1:
            raise ConnectionError("down")
        return "ok"

    @actions.action("test.once")
    async def once(ctx: prana.NodeContext) -> Any:
        calls.append((ctx.node_key, ctx.attempt, ctx.idempotency_key))
        return ctx.input

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "first": "test.once",
            "flaky": "test.flaky",
            "last": "test.once",
        },
        ["start -> first", "first -> flaky", "flaky -> last"],
        actions=actions,
    )
    path = tmp_path / "prana.db"
    async with open_engine(actions=actions, path=path) as engine:
        failed = await engine.run(workflow, 3)
        with pytest.raises(prana.InvalidTransition, match="is failed; only a paused execution"):
            await engine.unpause(failed.id)
    assert failed.status == "failed"
    async with open_engine(actions=actions, path=path) as engine:
        done = await engine.retry(failed.id)
        with pytest.raises(prana.InvalidTransition, match="only a failed execution can be retried"):
            await engine.retry(failed.id)
    assert done.status == "completed"
    assert [(r.node_key, r.status, r.attempt) for r in done.node_runs] == [
        ("start", "completed", 1),
        ("first", "completed", 1),
        ("flaky", "failed", 1),
        ("flaky", "completed", 2),
        ("last", "completed", 1),
    ]
    key = f"{failed.id}:flaky:0"
    assert calls == [
        ("first", 1, f"{failed.id}:first:0"),
        ("flaky", 1, key),
        ("flaky", 2, key),
        ("last", 1, f"{failed.id}:last:0"),
    ]


async def test_a_workflow_timeout_ends_the_execution_timed_out_even_across_a_restart(
    tmp_path: Path,
) -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "nap": ("wait.interval", {"duration": "2h"}),
            "after": "core.noop",
        },
        ["start -> nap", "nap -> after"],
        settings={"timeout": "1h"},
    )
    clock = VirtualClock(start=T0)
    path = tmp_path / "prana.db"
    async with open_engine(path=path, clock=clock) as engine:
        waiting = await engine.run(workflow)
    assert waiting.status == "suspended"
    assert waiting.deadline == T0 + 3600
    seen: list[prana.events.Event] = []
    async with open_engine(path=path, clock=clock, middleware=[seen.append]) as engine:
        clock.advance(3601)
        with anyio.fail_after(5):
            ended = await engine.wait(waiting.id)
    assert ended.status == "timed_out"
    assert ended.error is not None
    assert ended.error.code == "timed_out"
    assert "3600 s" in ended.error.message
    assert [(r.node_key, r.status) for r in ended.node_runs] == [
        ("start", "completed"),
        ("nap", "cancelled"),
    ]
    assert any(isinstance(event, prana.events.ExecutionTimedOut) for event in seen)


async def test_a_timeout_stops_running_nodes() -> None:
    actions, _, _ = gated_actions()
    clock = VirtualClock(start=T0)
    async with prana.Engine(actions=actions, clock=clock, env={}) as engine:
        handle = await engine.start(chain(actions, settings={"timeout": 30}), 1)
        ended = await drive(clock, handle)
    assert ended.status == "timed_out"
    assert ended.finished_at == T0 + 30
    assert [(r.node_key, r.status) for r in ended.node_runs][-1] == ("slow", "cancelled")


async def test_another_engine_on_the_same_store_applies_a_cancel(tmp_path: Path) -> None:
    actions, _, _ = gated_actions()
    path = tmp_path / "prana.db"
    async with (
        open_engine(
            actions=actions, path=path, clock=prana.actors.SystemClock(), heartbeat=0.05
        ) as owner,
        open_engine(actions=actions, path=path, recover=False) as other,
    ):
        handle = await owner.start(chain(actions), 1)
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(10):
            cancelled = await other.cancel(handle.id, "from elsewhere")
            result = await handle.result()
    assert cancelled.status == result.status == "cancelled"
    assert result.error is not None
    assert result.error.message == "from elsewhere"
