"""Background problems never end the engine nor leave an execution stuck without a
recorded reason (DESIGN §7: one failure policy for background services)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

T0 = 1_900_000_000.0


def chain() -> prana.Workflow:
    return make_workflow(
        {"start": "manual.trigger", "a": "core.noop", "b": "core.noop"},
        ["start -> a", "a -> b"],
    )


async def until(condition: Any, what: str) -> None:
    """Wait (in real time: locks and heartbeats are real) until ``condition()``; the
    health of services is read, not awaited."""
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_store_locked_past_busy_timeout_does_not_end_an_idle_engine(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    other = sqlite3.connect(path, isolation_level=None)
    try:
        async with prana.Engine(
            store=f"sqlite:///{path}?busy_timeout=0.1", heartbeat=0.05, env={}
        ) as engine:
            assert engine.health().ok
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            await until(lambda: engine.health().service("heartbeat").failures >= 2, "a failed beat")
            health = engine.health()
            assert not health.ok
            heartbeat = health.service("heartbeat")
            assert heartbeat.state == "retrying"
            assert heartbeat.last_error is not None
            assert "kept it locked for longer than busy_timeout" in heartbeat.last_error
            other.execute("ROLLBACK")
            await until(lambda: engine.health().ok, "the heartbeat to recover")
            done = await engine.run(chain())
    finally:
        other.close()
    assert done.status == "completed"
    assert engine.health().service("heartbeat").failures == 0


async def test_an_execution_stopped_by_a_locked_store_carries_on_once_it_is_free(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    actions = prana.ActionRegistry()
    keys: list[str] = []
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    release = threading.Timer(0.3, other.execute, ("ROLLBACK",))

    @actions.action("test.lock")
    def lock(ctx: prana.NodeContext) -> Any:
        keys.append(ctx.idempotency_key)
        if len(keys) == 1:
            # Another process takes the write lock as this node ends, for longer
            # than busy_timeout: its result cannot be saved.
            other.execute("BEGIN IMMEDIATE")
            release.start()
        return "locked once"

    workflow = make_workflow(
        {"start": "manual.trigger", "a": "test.lock", "b": "core.noop"},
        ["start -> a", "a -> b"],
        actions=actions,
    )
    try:
        async with prana.Engine(
            actions=actions, store=f"sqlite:///{path}?busy_timeout=0.1", env={}
        ) as engine:
            with pytest.raises(prana.StoreError, match="locked for longer than busy_timeout"):
                await engine.run(workflow)
            (stopped,) = await engine.list_executions()
            assert stopped.status == "running"  # as last saved
            with anyio.fail_after(10):
                done = await engine.wait(stopped.id)
            assert engine.health().service("executions").failures == 0
    finally:
        if release.is_alive():
            release.join()
        other.close()
    assert done.status == "completed"
    assert done.order == ["start", "a", "b"]
    # a ran again (its result was never saved), with the same idempotency key.
    assert keys == [f"{done.id}:a:0"] * 2


async def test_a_due_retry_in_an_engine_without_the_action_fails_with_a_reason_and_can_be_retried(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    clock = VirtualClock(start=T0)
    actions = prana.ActionRegistry()
    attempts: list[int] = []

    @actions.action("test.charge")
    def charge(ctx: prana.NodeContext) -> Any:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionResetError("the bank is down")
        return {"charged": ctx.attempt}

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "charge": {
                "type": "test.charge",
                "settings": {"retry": {"max_attempts": 3, "delay": "1h"}},
            },
        },
        ["start -> charge"],
        actions=actions,
    )
    async with open_engine(path=path, actions=actions, clock=clock) as engine:
        waiting = await engine.run(workflow)
    assert waiting.status == "suspended"  # the retry is a durable timer

    # An engine deployed without the action: the retry comes due there.
    async with open_engine(path=path, clock=clock) as other:
        clock.advance(3600)
        with anyio.fail_after(5):
            failed = await other.wait(waiting.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "cannot_restore"
    assert "unknown action 'test.charge'" in failed.error.message
    assert f"prana retry {waiting.id}" in failed.error.message
    assert failed.suspensions == ()
    assert attempts == [1]

    # With the action back, a retry runs the node that was waiting, as its next attempt
    # (the attempt that waited was cancelled with the execution).
    async with open_engine(path=path, actions=actions, clock=clock) as engine:
        done = await engine.retry(waiting.id)
    assert done.status == "completed"
    assert done.output == {"charged": 3}
    assert [(run.status, run.attempt) for run in done.runs_of("charge")] == [
        ("retried", 1),
        ("cancelled", 2),
        ("completed", 3),
    ]
    assert attempts == [1, 3]


async def test_cancelling_an_execution_that_cannot_be_restored_here_still_works(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    actions = prana.ActionRegistry()

    @actions.action("test.later")
    def later(ctx: prana.NodeContext) -> Any:
        return ctx.input

    workflow = make_workflow(
        {"start": "manual.trigger", "approval": "wait.webhook", "after": "test.later"},
        ["start -> approval", "approval -> after"],
        actions=actions,
    )
    async with open_engine(path=path, actions=actions) as engine:
        waiting = await engine.run(workflow)
    async with open_engine(path=path) as other:  # without test.later
        with pytest.raises(prana.PranaError, match=r"unknown action 'test\.later'"):
            await other.resume(waiting.id, {"ok": True})
        cancelled = await other.cancel(waiting.id, "no longer needed")
    assert cancelled.status == "cancelled"
    assert cancelled.error is not None
    assert cancelled.error.message == "no longer needed"
    assert cancelled.suspensions == ()


async def test_a_busy_heartbeat_never_stops_the_engine_s_own_executions(tmp_path: Path) -> None:
    # Executions start, are taken back from the store and wait again while the
    # heartbeat renews leases again and again: none is told it lost its lease.
    path = tmp_path / "prana.db"
    workflow = make_workflow(
        {"start": "manual.trigger", "approval": "wait.webhook", "after": "core.noop"},
        ["start -> approval", "approval -> after"],
    )
    async with prana.Engine(store=f"sqlite:///{path}", heartbeat=0.001, env={}) as engine:
        waiting: list[prana.Execution] = []
        done: list[prana.Execution] = []

        async def run(n: int) -> None:
            waiting.append(await engine.run(workflow, n))

        async def resume(execution_id: str) -> None:
            done.append(await engine.resume(execution_id, "ok"))

        async with anyio.create_task_group() as group:
            for n in range(100):
                group.start_soon(run, n)
        async with anyio.create_task_group() as group:
            for execution in waiting:
                group.start_soon(resume, execution.id)
        assert engine.health().ok
    assert [execution.status for execution in waiting] == ["suspended"] * 100
    assert [execution.status for execution in done] == ["completed"] * 100
