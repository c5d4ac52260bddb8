"""Queued executions: a concurrency key limits how many executions of the key are in
progress at once, across engines and restarts; priorities order the queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from prana.actors._ownership import LeftToOthers
from prana.testing import open_engine


def holding(
    id: str = "per_customer", *, limit: int = 1, priority: int = 0, key: str | None = None
) -> dict[str, Any]:
    """A workflow whose executions wait for an answer, one customer at a time."""
    return {
        "id": id,
        "settings": {
            "concurrency_key": key or "{{ input.customer }}",
            "concurrency_limit": limit,
            "priority": priority,
        },
        "nodes": [
            {"key": "start", "type": "manual.trigger"},
            {"key": "hold", "type": "wait.webhook"},
        ],
        "connections": [{"from": "start", "to": "hold"}],
    }


def waits(execution: prana.Execution) -> bool:
    return execution.status != "queued"


async def answer(engine: prana.Engine, execution_id: str) -> prana.Execution:
    execution = await engine.get(execution_id)
    token = execution.suspensions[0].token or ""
    return await engine.resume_token(token, {"ok": True})


async def test_a_key_at_its_limit_queues_the_next_until_one_ends() -> None:
    async with open_engine() as engine:
        first = await engine.run(holding(), {"customer": "ann"})
        second = await engine.run(holding(), {"customer": "ann"})
        other = await engine.run(holding(), {"customer": "bob"})
        assert (first.status, second.status, other.status) == ("suspended", "queued", "suspended")
        assert second.order == []  # nothing of it ran
        assert (second.concurrency_key, second.priority) == ("ann", 0)
        assert (await engine.get(second.id)).status == "queued"
        assert (await engine.count_executions())["queued"] == 1
        explained = await engine.explain(second.id)
        assert not explained.moving
        assert explained.reasons == (
            "it is queued until an execution with concurrency key 'ann' ends: at most 1 run "
            "at once (settings.concurrency_limit); priority 0",
        )
        assert [e.id for e in await engine.list_executions(status="queued")] == [second.id]

        assert (await answer(engine, first.id)).status == "completed"
        with anyio.fail_after(10):
            started = await engine.wait(second.id, until=waits)
    assert started.status == "suspended"
    assert started.order == ["start", "hold"]
    assert started.started_at == second.started_at  # when it was queued


async def test_a_queued_execution_says_so_in_its_events_then_starts() -> None:
    async with open_engine() as engine:
        subscription = engine.events()
        holder = await engine.run(holding(), {"customer": "ann"})
        queued = await engine.run(holding(), {"customer": "ann"}, priority=3)
        await answer(engine, holder.id)
        with anyio.fail_after(10):
            await engine.wait(queued.id, until=waits)
        subscription.close()
        seen = [event async for event in subscription if event.execution_id == queued.id]
    assert [(type(event).__name__, event.sequence) for event in seen[:3]] == [
        ("ExecutionQueued", 1),
        ("ExecutionStarted", 2),
        ("NodeStarted", 3),
    ]
    first = seen[0]
    assert isinstance(first, prana.events.ExecutionQueued)
    assert (first.concurrency_key, first.priority, first.workflow_id) == (
        "ann",
        3,
        "per_customer",
    )


async def test_a_limit_of_two_lets_two_in_and_queues_the_third() -> None:
    async with open_engine() as engine:
        runs = [await engine.run(holding(limit=2), {"customer": "ann"}) for _ in range(3)]
    assert [run.status for run in runs] == ["suspended", "suspended", "queued"]


async def test_higher_priority_starts_first_then_the_oldest() -> None:
    low, high = holding("low"), holding("high", priority=5)
    async with open_engine() as engine:
        clock = engine.clock
        assert isinstance(clock, prana.testing.VirtualClock)
        holder = await engine.run(low, {"customer": "ann"})
        queued = []
        for n, workflow in [(1, low), (2, low), (3, high)]:
            clock.advance(1)
            queued.append(await engine.run(workflow, {"customer": "ann", "n": n}))
        assert [execution.status for execution in queued] == ["queued"] * 3
        order = []
        current = holder
        for _ in queued:
            await answer(engine, current.id)
            with anyio.fail_after(10):
                waiting = await engine.list_executions(status="suspended")
                while not waiting:
                    await engine.wait_idle()
                    waiting = await engine.list_executions(status="suspended")
            (current,) = waiting
            order.append(current.input["n"])
    assert order == [3, 1, 2]


async def test_a_start_may_give_its_own_priority() -> None:
    async with open_engine() as engine:
        clock = engine.clock
        assert isinstance(clock, prana.testing.VirtualClock)
        holder = await engine.run(holding(), {"customer": "ann"})
        clock.advance(1)
        plain = await engine.run(holding(), {"customer": "ann", "n": 1})
        clock.advance(1)
        urgent = await engine.start(holding(), {"customer": "ann", "n": 2}, priority=9)
        assert (await engine.get(urgent.id)).priority == 9
        await answer(engine, holder.id)
        with anyio.fail_after(10):
            started = await urgent.result()
        assert started.status == "suspended"  # it went first
        assert (await engine.get(plain.id)).status == "queued"
        with pytest.raises(prana.PranaError, match="priority must be a whole number"):
            await engine.start(holding(), {"customer": "bob"}, priority=10**9)
        for wrong in ("high", 2.5, True):  # refused as such, not with a TypeError
            with pytest.raises(prana.PranaError, match=f"not {wrong!r}"):
                await engine.start(holding(), {"customer": "bob"}, priority=wrong)  # type: ignore[arg-type]


async def test_a_queued_execution_is_cancelled_without_running_anything() -> None:
    async with open_engine() as engine:
        holder = await engine.run(holding(), {"customer": "ann"})
        queued = await engine.run(holding(), {"customer": "ann"})
        with pytest.raises(prana.InvalidTransition, match="is queued; rerun it once"):
            await engine.rerun(queued.id, from_node="hold")
        with pytest.raises(prana.InvalidTransition, match="only a running or waiting"):
            await engine.pause(queued.id)
        cancelled = await engine.cancel(queued.id, "not needed")
        assert (cancelled.status, cancelled.order) == ("cancelled", [])
        assert cancelled.error is not None
        assert cancelled.error.message == "not needed"
        # Its place is gone: the next one starts when the holder ends.
        after = await engine.run(holding(), {"customer": "ann"})
        await answer(engine, holder.id)
        with anyio.fail_after(10):
            started = await engine.wait(after.id, until=waits)
        assert started.status == "suspended"
        assert (await engine.get(queued.id)).status == "cancelled"


async def test_a_sync_child_with_a_key_is_queued_and_its_parent_waits_for_it() -> None:
    parent = {
        "id": "parent",
        "nodes": [
            {"key": "start", "type": "manual.trigger"},
            {
                "key": "call",
                "type": "workflow.execute",
                "params": {"workflow": "per_customer", "input": "{{ input }}"},
            },
        ],
        "connections": [{"from": "start", "to": "call"}],
    }
    async with open_engine(workflows=[holding()]) as engine:
        holder = await engine.run(holding(), {"customer": "ann"})
        waiting = await engine.run(parent, {"customer": "ann"})
        assert waiting.status == "suspended"
        (child_id,) = [s.child_execution_id for s in waiting.suspensions]
        assert (await engine.get(child_id or "")).status == "queued"
        await answer(engine, holder.id)
        with anyio.fail_after(10):
            await engine.wait(child_id or "", until=waits)
        await answer(engine, child_id or "")
        with anyio.fail_after(10):
            done = await engine.wait(waiting.id)
    assert done.status == "completed"


async def test_a_child_whose_key_cannot_be_rendered_fails_its_node() -> None:
    parent = {
        "id": "parent",
        "nodes": [
            {"key": "start", "type": "manual.trigger"},
            {"key": "call", "type": "workflow.execute", "params": {"workflow": "named"}},
        ],
        "connections": [{"from": "start", "to": "call"}],
    }
    named = holding("named", key="{{ input.customer.name }}")
    async with open_engine(workflows=[named]) as engine:
        failed = await engine.run(parent, {"customer": None})
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "expression_error"
    assert failed.error.node_key == "call"
    assert "workflow 'named' cannot be queued" in failed.error.message


async def test_a_key_that_cannot_be_rendered_refuses_the_start() -> None:
    async with open_engine() as engine:
        with pytest.raises(prana.ExpressionError, match="concurrency_key"):
            await engine.run(holding(key="{{ input.customer.name }}"), {"customer": None})
        with pytest.raises(prana.ExpressionError, match="must give a string or a number"):
            await engine.run(holding(), {"customer": {"id": 1}})
        assert await engine.list_executions() == []
        # A key that renders empty limits nothing: the execution starts at once.
        runs = [await engine.run(holding(), {"customer": ""}) for _ in range(2)]
    assert [run.status for run in runs] == ["suspended", "suspended"]


async def test_queued_executions_start_in_the_next_engine_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    async with open_engine(path=path) as engine:
        holder = await engine.run(holding(), {"customer": "ann"})
        queued = await engine.run(holding(), {"customer": "ann"})
        await engine.cancel(holder.id)
    async with open_engine(path=path) as engine:
        with anyio.fail_after(10):
            started = await engine.wait(queued.id, until=waits)
    assert started.status == "suspended"
    assert started.order == ["start", "hold"]


async def test_another_engine_on_the_store_starts_what_one_queued(tmp_path: Path) -> None:
    # Each engine hears of room made by the other within its heartbeat.
    path = tmp_path / "prana.db"
    async with (
        open_engine(path=path, clock=prana.actors.SystemClock(), heartbeat=0.05) as one,
        open_engine(path=path, clock=prana.actors.SystemClock(), heartbeat=0.05) as two,
    ):
        holder = await one.run(holding(), {"customer": "ann"})
        queued = await two.run(holding(), {"customer": "ann"})
        assert queued.status == "queued"
        await answer(one, holder.id)
        with anyio.fail_after(10):
            started = await two.wait(queued.id, until=waits)
    assert started.status == "suspended"


def gated(
    actions: prana.ActionRegistry,
    gate: anyio.Event,
    ran: list[str],
    name: str,
    second: anyio.Event | None = None,
) -> None:
    """``test.gated``: waits for ``gate``; ``ran`` says which engine ran which job,
    ``second`` is set when a second one has begun; the output says how many ran at
    once at most."""
    running = [0, 0]  # now, most at once

    @actions.action("test.gated")
    async def gated_action(ctx: prana.NodeContext) -> Any:
        running[0] += 1
        running[1] = max(running)
        ran.append(f"{name}:{ctx.input['job']}")
        if second is not None and len(ran) == 2:
            second.set()
        await gate.wait()
        running[0] -= 1
        return {"most_at_once": running[1]}


GATED = {
    "id": "gated",
    "nodes": [{"key": "start", "type": "manual.trigger"}, {"key": "work", "type": "test.gated"}],
    "connections": [{"from": "start", "to": "work"}],
}


async def test_an_engine_runs_at_most_max_running_and_queues_the_rest() -> None:
    actions, gate, ran = prana.ActionRegistry(), anyio.Event(), []
    gated(actions, gate, ran, "one")
    async with open_engine(actions=actions, max_running=2) as engine:
        handles = [await engine.start(GATED, {"job": job}) for job in range(5)]
        statuses = [(await engine.get(handle.id)).status for handle in handles]
        gate.set()
        with anyio.fail_after(10):
            done = [await handle.result() for handle in handles]
    assert statuses == ["running", "running", "queued", "queued", "queued"]
    assert [execution.status for execution in done] == ["completed"] * 5
    assert sorted(ran) == [f"one:{job}" for job in range(5)]
    assert max(execution.output["most_at_once"] for execution in done) == 2


async def test_an_engine_with_room_runs_what_a_full_one_queued(tmp_path: Path) -> None:
    path = tmp_path / "prana.db"
    gate, ran, two = anyio.Event(), [], anyio.Event()
    full_actions, roomy_actions = prana.ActionRegistry(), prana.ActionRegistry()
    gated(full_actions, gate, ran, "full", two)
    gated(roomy_actions, gate, ran, "roomy", two)
    clock = prana.actors.SystemClock()
    async with (
        open_engine(actions=full_actions, path=path, clock=clock, max_running=1) as full,
        open_engine(actions=roomy_actions, path=path, clock=clock, heartbeat=0.05),
    ):
        first = await full.start(GATED, {"job": 0})
        second = await full.start(GATED, {"job": 1})
        with anyio.fail_after(10):
            await two.wait()  # the roomy engine has started the second job
            gate.set()
            done = await full.wait(second.id)
            await first.result()
    assert done.status == "completed"
    assert ran == ["full:0", "roomy:1"]


SPECIAL = {
    "id": "special",
    "nodes": [
        {"key": "start", "type": "manual.trigger"},
        {"key": "work", "type": "test.special"},
    ],
    "connections": [{"from": "start", "to": "work"}],
}


async def test_queued_work_an_engine_cannot_run_is_left_to_one_that_can(tmp_path: Path) -> None:
    # The engine with room lacks the workflow's action (an older daemon, say): it leaves
    # the execution queued for the engine that has it, rather than failing it.
    path, clock = tmp_path / "prana.db", prana.actors.SystemClock()
    gate, ran = anyio.Event(), []
    able = prana.ActionRegistry()
    gated(able, gate, ran, "able")

    @able.action("test.special")
    def special(ctx: prana.NodeContext) -> Any:
        ran.append("special")
        return {"done": True}

    async with (
        open_engine(actions=able, path=path, clock=clock, max_running=1, heartbeat=0.05) as one,
        open_engine(path=path, clock=clock, heartbeat=0.05) as other,  # no test.special
    ):
        busy = await one.start(GATED, {"job": 0})
        queued = await one.start(SPECIAL, None)
        for _ in range(3):  # the other engine claims it, lets go, and passes it by
            before = other.health().service("queue").last_success_at or 0.0
            with anyio.fail_after(10):
                while (other.health().service("queue").last_success_at or 0.0) <= before:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
        assert (await one.get(queued.id)).status == "queued"
        gate.set()
        await busy.result()
        with anyio.fail_after(10):
            done = await one.wait(queued.id)
    assert done.status == "completed"
    assert ran == ["able:0", "special"]


async def test_queued_work_an_engine_alone_cannot_run_fails_saying_why(tmp_path: Path) -> None:
    path = tmp_path / "prana.db"
    able = prana.ActionRegistry()
    able.action("test.special")(lambda ctx: None)
    gate, ran = anyio.Event(), []
    gated(able, gate, ran, "able")
    async with open_engine(actions=able, path=path, max_running=1) as one:
        await one.start(GATED, {"job": 0})
        queued = await one.start(SPECIAL, None)
    async with open_engine(path=path) as alone:  # has no test.special
        with anyio.fail_after(10):
            failed = await alone.wait(queued.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "cannot_restore"
    assert "test.special" in failed.error.message


def waits_then_works(pause: str) -> dict[str, Any]:
    """A workflow that waits ``pause``, then runs ``test.special``, which only the
    engines given :func:`able` have."""
    return {
        "id": "later",
        "nodes": [
            {"key": "start", "type": "manual.trigger"},
            {"key": "pause", "type": "wait.interval", "params": {"duration": pause}},
            {"key": "work", "type": "test.special"},
        ],
        "connections": [{"from": "start", "to": "pause"}, {"from": "pause", "to": "work"}],
    }


def able() -> prana.ActionRegistry:
    actions = prana.ActionRegistry()
    actions.action("test.special")(lambda ctx: {"done": True})
    return actions


async def test_a_timer_an_engine_cannot_carry_on_is_left_to_one_that_can(tmp_path: Path) -> None:
    # Both engines fire the timers they find in the store; the one without the
    # workflow's action leaves the execution be instead of failing it.
    path, clock = tmp_path / "prana.db", prana.actors.SystemClock()
    async with (
        open_engine(actions=able(), path=path, clock=clock, heartbeat=0.05) as one,
        open_engine(path=path, clock=clock, heartbeat=0.05),  # has no test.special
    ):
        waiting = [await one.run(waits_then_works("100ms")) for _ in range(5)]
        with anyio.fail_after(10):
            done = [await one.wait(execution.id) for execution in waiting]
    assert [execution.status for execution in done] == ["completed"] * 5
    assert all(execution.output == {"done": True} for execution in done)


def test_an_execution_is_left_to_others_for_a_grace_counted_while_it_keeps_coming_back() -> None:
    now = [0.0]
    left = LeftToOthers(grace=10.0, now=lambda: now[0])
    said = []
    for moment in (0.0, 3.0, 6.0, 9.0, 10.0):
        now[0] = moment
        said.append(left.leave("a"))
    assert said == [None, True, True, True, False]  # said once, then failed at 10 s
    now[0] = 11.0
    assert left.leave("a") is None  # forgotten once failed: a new count
    now[0] = 30.0  # not seen for longer than the grace: a new count too
    assert left.leave("a") is None
    assert left.leave("b") is None  # each execution has its own
    assert LeftToOthers(grace=0.0).leave("a") is False


async def test_a_timer_no_engine_alive_can_carry_on_fails_after_a_grace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two engines, neither with the workflow's action: each leaves the execution to
    # the other for a while (two lease terms), then it fails saying why, instead of
    # going back and forth for ever with a warning at every heartbeat.
    path, clock = tmp_path / "prana.db", prana.actors.SystemClock()
    async with open_engine(actions=able(), path=path, clock=clock) as gone:
        # Due once both engines below know of each other.
        waiting = await gone.run(waits_then_works("500ms"))
    assert waiting.status == "suspended"
    options: dict[str, Any] = {"path": path, "clock": clock, "lease": 0.3, "heartbeat": 0.05}
    async with open_engine(**options) as one, open_engine(**options):
        with anyio.fail_after(10):
            failed = await one.wait(waiting.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "cannot_restore"
    assert "test.special" in failed.error.message
    assert f"prana retry {waiting.id}" in failed.error.message
    left = [r for r in caplog.records if r.getMessage().startswith("left execution")]
    assert 1 <= len(left) <= 2  # said once by each engine at most, not at every heartbeat
