"""Engine.explain: why an execution is where it is, in words, for every kind of wait."""

from __future__ import annotations

from pathlib import Path

import anyio

import prana
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

MOMENT = 1_900_000_000.0  # 2030-03-17T17:46:40Z
LATER = "2030-03-17T18:46:40+00:00"  # an hour after


def holding(
    started: anyio.Event, release: anyio.Event
) -> tuple[prana.Workflow, prana.ActionRegistry]:
    """A workflow whose node ``hold`` sets ``started`` and runs until ``release``."""
    actions = prana.ActionRegistry()

    @actions.action("test.hold")
    async def hold(ctx: prana.NodeContext) -> str:
        started.set()
        await release.wait()
        return "held"

    workflow = make_workflow(
        {"start": "manual.trigger", "hold": "test.hold"}, ["start -> hold"], actions=actions
    )
    return workflow, actions


def waiting_on(node: tuple[str, dict]) -> prana.Workflow:
    return make_workflow(
        {"start": "manual.trigger", "wait": node, "after": "core.noop"},
        ["start -> wait", "wait -> after"],
    )


async def test_a_wait_for_data_names_its_token_and_its_deadline() -> None:
    clock = VirtualClock(start=MOMENT)
    async with prana.Engine(clock=clock) as engine:
        waiting = await engine.run(waiting_on(("wait.webhook", {"timeout": "1h"})))
        explained = await engine.explain(waiting.id)
    (token,) = [s.token for s in waiting.suspensions]
    assert explained.status == "suspended"
    assert not explained.moving
    assert explained.reasons == (
        f"node 'wait' waits for data until {LATER} (then it goes on through its 'timeout' "
        f"port): answer it with token {token} (POST /api/resume/{token}, or prana resume "
        f"{token})",
    )


async def test_a_timer_says_when_it_is_due_and_a_pause_what_carries_it_on() -> None:
    clock = VirtualClock(start=MOMENT)
    async with prana.Engine(clock=clock) as engine:
        waiting = await engine.run(waiting_on(("wait.interval", {"duration": "1h"})))
        timer = await engine.explain(waiting.id)
        await engine.pause(waiting.id)
        paused = await engine.explain(waiting.id)
    assert timer.reasons == (f"node 'wait' waits for its timer, due at {LATER}",)
    assert paused.status == "paused"
    assert paused.reasons[0].startswith("it is paused: nothing new runs until it is unpaused")
    assert paused.reasons[1:] == timer.reasons


async def test_a_retry_says_which_attempt_runs_when() -> None:
    clock = VirtualClock(start=MOMENT)
    actions = prana.ActionRegistry()

    @actions.action("test.down")
    def down(ctx: prana.NodeContext) -> None:
        raise RuntimeError("the service is down")

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "call": {
                "type": "test.down",
                "settings": {"retry": {"max_attempts": 3, "backoff": "fixed", "delay": "1h"}},
            },
        },
        ["start -> call"],
        actions=actions,
    )
    async with prana.Engine(clock=clock, actions=actions) as engine:
        waiting = await engine.run(workflow)
        explained = await engine.explain(waiting.id)
    assert explained.reasons == (f"node 'call' failed and runs again (attempt 2) at {LATER}",)


async def test_an_ended_execution_says_how_and_when_and_one_running_here_which_nodes(
    tmp_path: Path,
) -> None:
    clock = VirtualClock(start=MOMENT)
    started, release = anyio.Event(), anyio.Event()
    workflow, actions = holding(started, release)
    async with prana.Engine(clock=clock, actions=actions) as engine:
        handle = await engine.start(workflow)
        await started.wait()
        running = await engine.explain(handle.id)
        release.set()
        await handle.result()
        ended = await engine.explain(handle.id)
    assert running.moving
    assert running.reasons == ("it is running in this engine: hold running now",)
    assert not ended.moving
    assert ended.reasons == ("it ended completed at 2030-03-17T17:46:40+00:00",)


async def test_an_execution_of_another_engine_says_whose_lease_until_when(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    clock = VirtualClock(start=MOMENT)
    started, release = anyio.Event(), anyio.Event()
    workflow, actions = holding(started, release)
    # Leases are in real time; the first engine renews its lease far too rarely, as
    # if its process had frozen, and its lease is short.
    async with open_engine(
        path=path, actions=actions, clock=clock, lease=0.2, heartbeat=3600
    ) as first:
        handle = await first.start(workflow)
        await started.wait()
        async with open_engine(path=path, actions=actions, clock=clock, recover=False) as other:
            owned = await other.explain(handle.id)
            with anyio.fail_after(10):
                abandoned = owned
                while abandoned.moving:
                    await anyio.sleep(0.05)
                    abandoned = await other.explain(handle.id)
        release.set()
    assert owned.moving
    assert owned.reasons[0].startswith(f"it is running in engine {first.owner}, whose lease")
    assert owned.reasons[0].endswith("(renewed while that engine is alive)")
    assert abandoned.reasons[0].startswith(
        f"its engine {first.owner} stopped renewing its lease at "
    )
    assert (
        "(it died or is frozen): an engine looking for abandoned executions takes it "
        in (abandoned.reasons[0])
    )


async def test_a_parent_says_which_child_it_waits_for() -> None:
    child = make_workflow(
        {"start": "manual.trigger", "ask": ("wait.webhook", {})}, ["start -> ask"], id="child"
    )
    parent = make_workflow(
        {"start": "manual.trigger", "call": ("workflow.execute", {"workflow": "child"})},
        ["start -> call"],
        id="parent",
    )
    async with prana.Engine(clock=VirtualClock(start=MOMENT), workflows=[child]) as engine:
        handle = await engine.start(parent)
        waiting = await handle.result()
        explained = await engine.explain(waiting.id)
    (suspension,) = waiting.suspensions
    assert explained.reasons == (
        f"node 'call' waits for its child execution {suspension.child_execution_id} to end",
    )


async def test_an_engine_without_the_workflow_s_actions_says_it_cannot_carry_it_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    actions = prana.ActionRegistry()

    @actions.action("test.ask")
    def ask(ctx: prana.NodeContext) -> prana.Suspend:
        return prana.Suspend(kind="webhook", token=True)

    workflow = make_workflow(
        {"start": "manual.trigger", "ask": "test.ask"}, ["start -> ask"], actions=actions
    )
    async with open_engine(path=path, actions=actions) as able:
        waiting = await able.run(workflow)
        with_it = await able.explain(waiting.id)
    async with open_engine(path=path, recover=False) as unable:  # the built-ins only
        without = await unable.explain(waiting.id)
    assert waiting.status == "suspended"
    assert not any("cannot carry it on" in reason for reason in with_it.reasons)
    assert without.reasons[-1].startswith("this engine cannot carry it on (")
    assert "1 problem: nodes[1].type: unknown action 'test.ask'" in without.reasons[-1]
    assert without.reasons[-1].endswith(
        "an engine that can (one with the workflow's actions) has to"
    )
