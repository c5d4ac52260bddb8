"""Retries with backoff, retry_on, and node timeouts (DESIGN §5.3), on virtual time."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import prana
from prana.testing import VirtualClock, open_engine
from tests.helpers import drive, make_workflow

T0 = 1_900_000_000.0


def flaky_actions(
    failures: int, exception: BaseException
) -> tuple[prana.ActionRegistry, list[Any]]:
    """An action ``flaky`` that raises ``exception`` on its first ``failures`` attempts
    and records what each attempt saw."""
    actions = prana.ActionRegistry()
    seen: list[Any] = []

    @actions.action("test.flaky")
    async def flaky(ctx: prana.NodeContext) -> object:
        seen.append((ctx.attempt, ctx.idempotency_key, ctx.now))
        if len(seen) <= failures:
            raise exception
        return {"ok": ctx.input}

    return actions, seen


def retrying(
    retry: dict[str, Any], actions: prana.ActionRegistry, **settings: Any
) -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "call": {"type": "test.flaky", "settings": {"retry": retry, **settings}},
            "after": "core.noop",
        },
        ["start -> call", "call -> after"],
        actions=actions,
    )


def attempts(execution: prana.Execution, key: str = "call") -> list[tuple[str, int]]:
    return [(run.status, run.attempt) for run in execution.node_runs if run.node_key == key]


async def test_a_flaky_node_is_tried_again_until_it_succeeds() -> None:
    actions, seen = flaky_actions(2, ConnectionResetError("peer went away"))
    workflow = retrying({"max_attempts": 3, "backoff": "fixed", "delay": "1s"}, actions)
    clock = VirtualClock(start=T0)
    async with prana.Engine(actions=actions, clock=clock, env={}) as engine:
        handle = await engine.start(workflow, 7)
        events = handle.events()
        done = await drive(clock, handle)
        retrying_events = [
            event async for event in events if isinstance(event, prana.events.NodeRetrying)
        ]
    assert done.status == "completed"
    assert done.output == {"ok": 7}
    assert done.order == ["start", "call", "call", "call", "after"]
    assert attempts(done) == [("retried", 1), ("retried", 2), ("completed", 3)]
    first = done.node_runs[1]
    assert first.error is not None
    assert (first.error.code, first.error.message) == (
        "action_error",
        "ConnectionResetError: peer went away",
    )
    assert [attempt for attempt, _, _ in seen] == [1, 2, 3]
    assert len({key for _, key, _ in seen}) == 1  # one run, one idempotency key
    assert [now - T0 for _, _, now in seen] == [0.0, 1.0, 2.0]  # waited on the clock
    assert [
        (event.run.attempt, event.next_attempt, event.at - T0) for event in retrying_events
    ] == [
        (1, 2, 1.0),
        (2, 3, 2.0),
    ]


async def test_exponential_backoff_is_capped_and_gives_up_after_max_attempts() -> None:
    actions, seen = flaky_actions(99, TimeoutError("slow"))
    workflow = retrying(
        {"max_attempts": 5, "backoff": "exponential", "delay": "250ms", "max_delay": "1s"}, actions
    )
    clock = VirtualClock(start=T0)
    async with prana.Engine(actions=actions, clock=clock, env={}) as engine:
        done = await drive(clock, await engine.start(workflow, 1))
    starts = [now - T0 for _, _, now in seen]
    assert [later - earlier for earlier, later in itertools.pairwise(starts)] == [
        0.25,
        0.5,
        1.0,
        1.0,
    ]
    assert done.status == "failed"
    assert attempts(done) == [
        ("retried", 1),
        ("retried", 2),
        ("retried", 3),
        ("retried", 4),
        ("failed", 5),
    ]
    assert done.error is not None
    assert (done.error.code, done.error.node_key) == ("action_error", "call")
    assert done.order == ["start", "call", "call", "call", "call", "call"]


async def test_jitter_shortens_waits_the_same_way_every_time() -> None:
    waits = []
    for _ in range(2):
        actions, seen = flaky_actions(2, OSError("flaky"))
        workflow = retrying(
            {"max_attempts": 3, "backoff": "fixed", "delay": "2s", "jitter": 0.5}, actions
        )
        clock = VirtualClock(start=T0)
        async with prana.Engine(actions=actions, clock=clock, env={}) as engine:
            done = await drive(clock, await engine.start(workflow, 1))
        assert done.status == "completed"
        starts = [now for _, _, now in seen]
        waits.append([later - earlier for earlier, later in itertools.pairwise(starts)])
    # Each wait is between half and all of the delay; executions differ (their ids do).
    assert all(1.0 <= wait <= 2.0 for wait in waits[0] + waits[1])
    assert waits[0] != waits[1]


@pytest.mark.parametrize(
    ("retry_on", "raised", "tries"),
    [
        (["ConnectionError"], ConnectionResetError("reset"), 3),  # a base class matches
        (["builtins.ConnectionResetError"], ConnectionResetError("reset"), 3),
        (["ConnectionError"], ValueError("bad"), 1),
        (["rate_limited"], prana.NodeError("slow down", code="rate_limited"), 3),
        (["rate_limited"], prana.NodeError("no such user", code="bad_request"), 1),
        (["timeout"], KeyError("x"), 1),
    ],
)
async def test_retry_on_limits_what_is_tried_again(
    retry_on: list[str], raised: Exception, tries: int
) -> None:
    actions, seen = flaky_actions(99, raised)
    workflow = retrying({"max_attempts": 3, "delay": 0, "retry_on": retry_on}, actions)
    async with prana.Engine(actions=actions, env={}) as engine:
        done = await engine.run(workflow, 1)
    assert done.status == "failed"
    assert len(seen) == tries
    assert attempts(done)[-1] == ("failed", tries)


async def test_when_retries_run_out_the_error_goes_to_the_error_port() -> None:
    actions, _ = flaky_actions(99, RuntimeError("down"))
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "call": {
                "type": "test.flaky",
                "settings": {"retry": {"max_attempts": 2, "delay": 0}, "on_error": "error_port"},
            },
            "handled": ("data.set", {"values": "{{ input.code }}: attempt {{ input.run_index }}"}),
        },
        ["start -> call", "call.error -> handled"],
        actions=actions,
    )
    async with prana.Engine(actions=actions, env={}) as engine:
        done = await engine.run(workflow, 1)
    assert done.status == "completed"
    assert attempts(done) == [("retried", 1), ("failed", 2)]
    assert done.output == "action_error: attempt 0"


async def test_a_long_backoff_is_a_durable_timer_that_survives_a_restart(tmp_path: Path) -> None:
    actions, seen = flaky_actions(1, ConnectionResetError("reset"))
    workflow = retrying({"max_attempts": 3, "backoff": "fixed", "delay": "1h"}, actions)
    clock = VirtualClock(start=T0)
    path = tmp_path / "retry.db"
    async with open_engine(actions=actions, clock=clock, path=path) as engine:
        waiting = await engine.run(workflow, 5)
        assert waiting.status == "suspended"
        assert [(s.node_key, s.kind, s.wake_at, s.token) for s in waiting.suspensions] == [
            ("call", "retry", T0 + 3600, None)
        ]
        with pytest.raises(prana.InvalidTransition, match="waits to be tried again"):
            await engine.resume(waiting.id, {"x": 1})
        async with open_engine(actions=actions, clock=clock, path=path) as again:
            # The first engine is still open; a second one on the file sees the same.
            listed = await again.list_executions(status="suspended")
            assert [execution.id for execution in listed] == [waiting.id]
    clock.advance(3599)
    async with open_engine(actions=actions, clock=clock, path=path) as engine:
        assert (await engine.get(waiting.id)).status == "suspended"
        assert clock.jump() == T0 + 3600
        done = await engine.wait(waiting.id)
    assert done.status == "completed"
    assert done.output == {"ok": 5}
    assert attempts(done) == [("retried", 1), ("completed", 2)]
    assert [(attempt, now - T0) for attempt, _, now in seen] == [(1, 0.0), (2, 3600.0)]


def sleeper_actions() -> tuple[prana.ActionRegistry, list[int]]:
    actions = prana.ActionRegistry()
    started: list[int] = []

    @actions.action("test.slow")
    async def slow(ctx: prana.NodeContext) -> object:
        started.append(ctx.attempt)
        if ctx.attempt == 1:
            await anyio.sleep_forever()
        return "fast enough"

    return actions, started


async def test_a_node_that_runs_past_its_timeout_is_cancelled_and_can_be_retried() -> None:
    actions, started = sleeper_actions()
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "call": {
                "type": "test.slow",
                "settings": {
                    "timeout": "30s",
                    "retry": {"max_attempts": 2, "delay": "1s", "retry_on": ["timeout"]},
                },
            },
        },
        ["start -> call"],
        actions=actions,
    )
    clock = VirtualClock(start=T0)
    async with prana.Engine(actions=actions, clock=clock, env={}) as engine:
        done = await drive(clock, await engine.start(workflow))
    assert done.status == "completed"
    assert done.output == "fast enough"
    assert started == [1, 2]
    first, second = [run for run in done.node_runs if run.node_key == "call"]
    assert first.status == "retried"
    assert first.error is not None
    assert first.error.code == "timeout"
    assert first.error.message == "node 'call' ran longer than its timeout (30 s) and was cancelled"
    assert (second.started_at or 0) - T0 == 31.0


async def test_a_timeout_without_retry_follows_on_error() -> None:
    actions, _ = sleeper_actions()
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "call": {"type": "test.slow", "settings": {"timeout": 5, "on_error": "continue"}},
            "after": "core.noop",
        },
        ["start -> call", "call -> after"],
        actions=actions,
    )
    clock = VirtualClock(start=T0)
    async with prana.Engine(actions=actions, clock=clock, env={}) as engine:
        done = await drive(clock, await engine.start(workflow))
    assert done.status == "completed"
    assert done.output["code"] == "timeout"
    assert done.order == ["start", "call", "after"]


async def test_a_plain_function_returning_an_awaitable_is_awaited_under_its_timeout() -> None:
    # The supervisor calls a plain function itself; what it returns to await goes to
    # a worker task, still under the node's timeout, and the node starts only once.
    actions = prana.ActionRegistry()

    async def answer(value: str, forever: bool) -> str:
        await anyio.lowlevel.checkpoint()
        if forever:
            await anyio.sleep_forever()
        return value

    @actions.action("test.deferred")
    def deferred(ctx: prana.NodeContext) -> Any:
        return answer(ctx.node_key, ctx.params["forever"])

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "first": "core.noop",
            "quick": ("test.deferred", {"forever": False}),
            "late": {
                "type": "test.deferred",
                "params": {"forever": True},
                "settings": {"timeout": 5, "on_error": "continue"},
            },
        },
        ["start -> first", "first -> quick", "quick -> late"],
        actions=actions,
    )
    clock = VirtualClock(start=T0)
    async with prana.Engine(actions=actions, clock=clock, env={}) as engine:
        handle = await engine.start(workflow)
        events = handle.events()
        started: list[str] = []

        async def follow() -> None:
            async for event in events:
                if isinstance(event, prana.events.NodeStarted):
                    started.append(event.node_key)

        async with anyio.create_task_group() as group:
            group.start_soon(follow)
            done = await drive(clock, handle)
    assert started == ["start", "first", "quick", "late"]
    assert done.status == "completed"
    assert done.outputs["quick"] == "quick"
    late = done.node_runs[-1]
    assert (late.node_key, late.status, late.port) == ("late", "failed", "main")
    assert late.output["code"] == "timeout"
    assert clock.now() - T0 == 5.0
