"""``VirtualClock(autojump=True)``: whenever every task waits, the clock moves to the
next deadline by itself, so a test awaits a workflow with backoffs and waits and it
just completes, in virtual time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

T0 = 1_900_000_000.0


def flaky_workflow(failures: int, delay: str) -> tuple[prana.ActionRegistry, prana.Workflow]:
    actions = prana.ActionRegistry()
    calls: list[float] = []

    @actions.action("test.flaky")
    async def flaky(ctx: prana.NodeContext) -> Any:
        calls.append(ctx.now)
        if len(calls) <= failures:
            raise prana.NodeError("not yet", code="unavailable")
        return {"attempts": len(calls), "at": calls}

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "call": {
                "type": "test.flaky",
                "settings": {"retry": {"max_attempts": 5, "backoff": "fixed", "delay": delay}},
            },
        },
        ["start -> call"],
        actions=actions,
    )
    return actions, workflow


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_run_of_a_workflow_with_retry_backoffs_just_completes(
    tmp_path: Path, store: str
) -> None:
    actions, workflow = flaky_workflow(failures=2, delay="1s")
    clock = VirtualClock(start=T0, autojump=True)
    with anyio.fail_after(10):  # a hang fails the test instead of the suite
        if store == "memory":
            async with prana.Engine(actions=actions, clock=clock, env={}) as engine:
                done = await engine.run(workflow)
        else:
            async with open_engine(path=tmp_path / "p.db", actions=actions, clock=clock) as engine:
                done = await engine.run(workflow)
    assert done.status == "completed"
    assert done.output == {"attempts": 3, "at": [T0, T0 + 1, T0 + 2]}
    assert clock.now() == T0 + 2


async def test_waits_and_durable_backoffs_pass_in_virtual_time(tmp_path: Path) -> None:
    # A three-day wait and a ten-minute backoff (saved as a timer): run returns at the
    # wait, and wait() returns once the timers have fired.
    actions, _ = flaky_workflow(failures=1, delay="10m")
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "pause": ("wait.interval", {"duration": "3d"}),
            "call": {
                "type": "test.flaky",
                "settings": {"retry": {"max_attempts": 3, "backoff": "fixed", "delay": "10m"}},
            },
        },
        ["start -> pause", "pause -> call"],
        actions=actions,
    )
    clock = VirtualClock(start=T0, autojump=True)
    with anyio.fail_after(10):
        async with open_engine(path=tmp_path / "p.db", actions=actions, clock=clock) as engine:
            waiting = await engine.run(workflow)
            assert waiting.status == "suspended"
            done = await engine.wait(waiting.id)
    assert done.status == "completed"
    assert done.order == ["start", "pause", "call", "call"]
    assert done.output == {"attempts": 2, "at": [T0 + 3 * 86400, T0 + 3 * 86400 + 600]}
