"""An engine shares the event loop with the application it lives in: however many
executions are ready, only ``steps_at_once`` of them step between two rounds of the
loop (decision 0039)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

import prana
from prana.testing import open_engine
from tests.helpers import make_workflow


class Rounds:
    """What ran in each round of the event loop, as an application's task that takes
    one turn per round sees it."""

    def __init__(self) -> None:
        self.rounds: list[set[Any]] = [set()]
        self.done = False

    def saw(self, who: Any) -> None:
        self.rounds[-1].add(who)

    async def tick(self) -> None:
        while not self.done:
            self.rounds.append(set())
            await anyio.lowlevel.checkpoint()

    @property
    def most_at_once(self) -> int:
        return max(len(seen) for seen in self.rounds)


def recording(rounds: Rounds) -> tuple[prana.ActionRegistry, prana.Workflow]:
    actions = prana.ActionRegistry()

    @actions.action("test.step")
    def step(ctx: prana.NodeContext) -> Any:
        rounds.saw(ctx.execution_id)
        return ctx.input + 1

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "a": "test.step",
            "b": "test.step",
            "wait": "wait.webhook",
            "c": "test.step",
        },
        ["start -> a", "a -> b", "b -> wait", "wait -> c"],
        actions=actions,
    )
    return actions, workflow


@pytest.mark.parametrize("steps_at_once", [4, None])
async def test_many_executions_step_a_few_at_a_time_between_the_apps_rounds(
    steps_at_once: int | None, anyio_backend: str
) -> None:
    rounds = Rounds()
    actions, workflow = recording(rounds)
    options = {} if steps_at_once is None else {"steps_at_once": steps_at_once}
    bound = steps_at_once or 16
    count = 10 * bound
    waiting: dict[int, prana.Execution] = {}
    async with open_engine(actions=actions, **options) as engine:

        async def run(n: int) -> None:
            waiting[n] = await engine.run(workflow, n)

        async def resume(n: int) -> None:
            waiting[n] = await engine.resume(waiting[n].id, n + 2)  # what b gave

        async with anyio.create_task_group() as app:
            app.start_soon(rounds.tick)
            async with anyio.create_task_group() as group:
                for n in range(count):
                    group.start_soon(run, n)
            assert all(execution.status == "suspended" for execution in waiting.values())
            async with anyio.create_task_group() as group:
                for n in range(count):
                    group.start_soon(resume, n)
            await engine.wait_idle()
            rounds.done = True
        done = {n: await engine.get(execution.id) for n, execution in waiting.items()}
    assert {n: (execution.status, execution.output) for n, execution in done.items()} == {
        n: ("completed", n + 3) for n in range(count)
    }
    # Trio runs each batch of ready tasks in one order or its reverse, at random, so
    # the ticker's "round" may span two of the scheduler's batches: up to two turns'
    # worth of steps (seen with stores that commit off the loop, whose executions
    # wait for their commit without a turn).
    seen = bound if anyio_backend == "asyncio" else 2 * bound
    assert 1 < rounds.most_at_once <= seen


async def test_callers_cancelled_while_they_wait_for_a_turn_take_none_with_them() -> None:
    rounds = Rounds()
    actions, workflow = recording(rounds)
    async with open_engine(actions=actions, steps_at_once=1) as engine:
        with anyio.CancelScope() as waiting:
            async with anyio.create_task_group() as group:
                for n in range(5):
                    group.start_soon(engine.run, workflow, n)
                await anyio.lowlevel.checkpoint()
                waiting.cancel()
        with anyio.fail_after(5):  # a turn lost with a cancelled caller: no step ever again
            execution = await engine.run(workflow, 10)
            done = await engine.resume(execution.id, 12)
    assert (done.status, done.output) == ("completed", 13)


def test_steps_at_once_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="steps_at_once must be at least 1, not 0"):
        prana.Engine(steps_at_once=0)
