"""Engines that share a store: a short-lived engine (every CLI command opens one with
``recover=False``) leaves other executions alone, and an engine that leaves lets the
next take its executions at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

import prana
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

T0 = 1_900_000_000.0


def gated() -> tuple[prana.ActionRegistry, list[str], anyio.Event]:
    """``test.slow`` records each start and waits for the event."""
    actions = prana.ActionRegistry()
    starts: list[str] = []
    gate = anyio.Event()

    @actions.action("test.slow")
    async def slow(ctx: prana.NodeContext) -> Any:
        starts.append(ctx.idempotency_key)
        await gate.wait()
        return ctx.input

    return actions, starts, gate


async def test_an_engine_with_recover_off_fires_no_other_execution_s_timer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    clock = VirtualClock(start=T0)
    actions, starts, gate = gated()
    waits = make_workflow(
        {
            "start": "manual.trigger",
            "pause": ("wait.interval", {"duration": "1m"}),
            "slow": "test.slow",
        },
        ["start -> pause", "pause -> slow"],
        actions=actions,
    )
    quick = make_workflow({"start": "manual.trigger", "one": "core.noop"}, ["start -> one"])
    async with open_engine(path=path, actions=actions, clock=clock) as engine:
        waiting = await engine.run(waits)
    assert waiting.status == "suspended"
    clock.advance(120)  # the wait is due, and no engine runs

    # A command's engine comes and goes; the due wait is not its business.
    async with open_engine(path=path, actions=actions, clock=clock, recover=False) as command:
        assert (await command.run(quick)).status == "completed"
        await anyio.wait_all_tasks_blocked()
        assert (await command.get(waiting.id)).status == "suspended"
    assert starts == []

    # An engine that recovers fires it, and `slow` starts once.
    gate.set()
    async with open_engine(path=path, actions=actions, clock=clock) as engine:
        with anyio.fail_after(5):
            done = await engine.wait(waiting.id)
    assert done.status == "completed"
    assert done.order == ["start", "pause", "slow"]
    assert starts == [f"{waiting.id}:slow:0"]


async def test_an_engine_that_leaves_lets_the_next_carry_its_executions_on_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    actions, starts, gate = gated()
    workflow = make_workflow(
        {"start": "manual.trigger", "slow": "test.slow", "after": "core.noop"},
        ["start -> slow", "slow -> after"],
        actions=actions,
    )
    async with open_engine(path=path, actions=actions, lease=3600) as first:
        handle = await first.start(workflow, "x")
        await anyio.wait_all_tasks_blocked()  # slow runs
    gate.set()
    # Its lease was released as it left: the next engine takes the execution at once
    # (not after the hour the lease would last).
    async with open_engine(path=path, actions=actions, lease=3600) as second:
        with anyio.fail_after(5):
            done = await second.wait(handle.id)
    assert done.status == "completed"
    assert done.order == ["start", "slow", "after"]
    assert starts == [f"{handle.id}:slow:0"] * 2  # cut short, then run again


async def test_cancel_or_pause_of_an_execution_whose_engine_is_gone_starts_nothing_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    actions = prana.ActionRegistry()
    starts: list[str] = []
    hold = anyio.Event()

    @actions.action("test.slow")
    async def slow(ctx: prana.NodeContext) -> Any:
        starts.append(ctx.idempotency_key)
        if not hold.is_set():
            await anyio.sleep_forever()  # cut short when its engine goes
        return "done"

    workflow = make_workflow(
        {"start": "manual.trigger", "slow": "test.slow", "after": "core.noop"},
        ["start -> slow", "slow -> after"],
        actions=actions,
    )
    ids = []
    for _ in range(2):
        async with open_engine(path=path, actions=actions, recover=False) as gone:
            ids.append((await gone.start(workflow)).id)
            await anyio.wait_all_tasks_blocked()
    starts.clear()
    cancel_id, pause_id = ids
    async with open_engine(path=path, actions=actions, recover=False) as command:
        cancelled = await command.cancel(cancel_id, "not needed")
        paused = await command.pause(pause_id)
        assert starts == []  # neither ran its slow node again only to stop it
        assert [(r.node_key, r.status) for r in cancelled.node_runs] == [
            ("start", "completed"),
            ("slow", "cancelled"),
        ]
        assert paused.status == "paused"
        hold.set()
        done = await command.unpause(pause_id)  # the node cut short runs again now
    assert cancelled.status == "cancelled"
    assert done.status == "completed"
    assert done.order == ["start", "slow", "after"]
    assert starts == [f"{pause_id}:slow:0"]
