"""The engine as an application uses it: lifetime, handles, events, reads."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

import prana
from tests.helpers import make_workflow


def branching_workflow() -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "check": ("logic.if", {"condition": "{{ input.go }}"}),
            "yes": "core.noop",
            "no": "core.noop",
        },
        ["start -> check", "check.true -> yes", "check.false -> no"],
    )


async def test_events_arrive_in_order_with_sequence_numbers_and_progress() -> None:
    async with prana.Engine() as engine:
        handle = await engine.start(branching_workflow(), {"go": True})
        received = [event async for event in handle.events()]
        result = await handle.result()
    summary = [
        (type(event).__name__, getattr(event, "node_key", None))
        for event in received
    ]  # fmt: skip
    assert summary == [
        ("ExecutionStarted", None),
        ("NodeStarted", "start"),
        ("NodeCompleted", "start"),
        ("NodeStarted", "check"),
        ("NodeCompleted", "check"),
        ("NodeSkipped", "no"),
        ("NodeStarted", "yes"),
        ("NodeCompleted", "yes"),
        ("ExecutionCompleted", None),
    ]
    assert [event.sequence for event in received] == list(range(1, len(received) + 1))
    assert {event.execution_id for event in received} == {result.id}
    progress = [event.progress for event in received if hasattr(event, "progress")]
    assert progress == [0.25, 0.5, 0.75, 1.0]
    assert received[0].node_count == 4  # type: ignore[attr-defined]
    times = [event.time for event in received]
    assert times == sorted(times)


async def test_failed_execution_ends_with_execution_failed_event() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "stop": ("core.fail", {"message": "no stock", "code": "out_of_stock"}),
        },
        ["start -> stop"],
    )
    async with prana.Engine() as engine:
        handle = await engine.start(workflow)
        received = [event async for event in handle.events()]
    failed = received[-1]
    assert isinstance(failed, prana.events.ExecutionFailed)
    assert failed.error is not None
    assert (failed.error.code, failed.error.node_key) == ("out_of_stock", "stop")
    assert isinstance(received[-2], prana.events.NodeFailed)


async def test_a_handle_keeps_the_first_events_for_a_subscriber_who_comes_late() -> None:
    chain = {"start": "manual.trigger", **{f"n{i}": "core.noop" for i in range(3)}}
    workflow = make_workflow(chain, ["start -> n0", "n0 -> n1", "n1 -> n2"])
    async with prana.Engine() as engine:
        handle = await engine.start(workflow)
        done = await handle.result()  # the execution ends before anyone subscribes
        first = [event async for event in handle.events()]
        later = [event async for event in handle.events()]  # from now on: nothing left
    assert done.status == "completed"
    assert isinstance(first[0], prana.events.ExecutionStarted)
    assert isinstance(first[-1], prana.events.ExecutionCompleted)
    assert [event.sequence for event in first] == list(range(1, len(first) + 1))
    assert sum(isinstance(event, prana.events.NodeCompleted) for event in first) == 4
    assert later == []


async def test_a_slow_subscriber_never_holds_the_engine_and_learns_what_it_missed() -> None:
    chain = {"start": "manual.trigger", **{f"n{i}": "core.noop" for i in range(30)}}
    workflow = make_workflow(chain, ["start -> n0", *(f"n{i} -> n{i + 1}" for i in range(29))])
    async with prana.Engine() as engine:
        handle = await engine.start(workflow)
        subscription = handle.events(limit=5)
        result = await handle.result()  # finishes without anyone reading
        received = [event async for event in subscription]
    assert result.status == "completed"
    assert isinstance(received[0], prana.events.EventsDropped)
    assert received[0].count == 1 + 2 * 31 + 1 - 5
    assert len(received) == 6
    assert isinstance(received[-1], prana.events.ExecutionCompleted)
    assert received[0].sequence == received[1].sequence


async def test_middleware_sees_every_event_and_a_failing_hook_is_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def record(event: prana.events.Event) -> None:
        seen.append(type(event).__name__)

    def broken(event: prana.events.Event) -> None:
        raise RuntimeError("hook bug")

    async with prana.Engine(middleware=[broken, record]) as engine:
        result = await engine.run(branching_workflow(), {"go": False})
    assert result.status == "completed"
    assert seen[0] == "ExecutionStarted"
    assert seen[-1] == "ExecutionCompleted"
    assert seen.count("NodeCompleted") == 3
    assert "middleware" in caplog.text
    assert "hook bug" in caplog.text


async def test_middleware_is_a_chain_that_can_enrich_or_stop_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each hook gets the event and next: the first drops node starts, the second
    # adds a tenant, a broken one is skipped, a looking one sees what came through,
    # and subscribers get what comes out of the chain.
    looked: list[tuple[str, Any]] = []

    def quiet(event: prana.events.Event, next_: Any) -> None:
        if not isinstance(event, prana.events.NodeStarted):
            next_(event)

    def tenant(event: prana.events.Event, next_: Any) -> None:
        next_(attrs.evolve(event, attributes={**event.attributes, "tenant": "acme"}))

    def broken(event: prana.events.Event, next_: Any) -> None:
        raise RuntimeError("hook bug")

    def twice_broken(event: prana.events.Event, next_: Any) -> None:
        next_(event)
        raise RuntimeError("after passing it on")

    def look(event: prana.events.Event) -> None:
        looked.append((type(event).__name__, dict(event.attributes)))

    async with prana.Engine(middleware=[quiet, tenant, broken, twice_broken, look]) as engine:
        subscription = engine.events()
        result = await engine.run(branching_workflow(), {"go": False})
        subscription.close()
        heard = [event async for event in subscription]
    assert result.status == "completed"
    assert [name for name, _ in looked] == [type(event).__name__ for event in heard]
    assert "NodeStarted" not in [name for name, _ in looked]
    assert [name for name, _ in looked].count("NodeCompleted") == 3
    assert all(attributes == {"tenant": "acme"} for _, attributes in looked)
    assert all(event.attributes == {"tenant": "acme"} for event in heard)
    failures = [str(record.exc_info[1]) for record in caplog.records if record.exc_info]
    assert failures.count("hook bug") == len(heard)
    assert failures.count("after passing it on") == len(heard)


async def test_engine_wide_subscription_sees_every_execution() -> None:
    async with prana.Engine() as engine:
        subscription = engine.events()
        first = await engine.run(branching_workflow(), {"go": True})
        second = await engine.run(branching_workflow(), {"go": False})
    events = [event async for event in subscription]
    finished = [
        event.execution_id for event in events if isinstance(event, prana.events.ExecutionCompleted)
    ]
    assert finished == [first.id, second.id]


async def test_many_executions_run_at_once() -> None:
    actions = prana.ActionRegistry()

    @actions.action("test.yield")
    async def yield_(ctx: prana.NodeContext) -> Any:
        await anyio.lowlevel.checkpoint()
        return ctx.input

    workflow = make_workflow(
        {"start": "manual.trigger", "a": "test.yield", "b": "test.yield"},
        ["start -> a", "a -> b"],
        actions=actions,
    )
    async with prana.Engine(actions=actions) as engine:
        handles = [await engine.start(workflow, {"n": n}) for n in range(50)]
        results = [await handle.result() for handle in handles]
    assert [result.output for result in results] == [{"n": n} for n in range(50)]
    assert len({result.id for result in results}) == 50


@pytest.mark.parametrize(
    "where",
    [
        "commit on the spot",  # alone in the engine
        "commit in a batch",  # another execution is live
        "durability off",
        "async action",  # the execution has gone to a task of its own
    ],
)
async def test_cancelling_run_leaves_the_execution_to_finish_in_the_engine(where: str) -> None:
    # engine.run waits for its execution's supervisor, which runs in a task of the
    # engine's: a cancelled caller stops waiting, and the execution carries on,
    # neither dropping nor redoing a node, whatever its saves were doing.
    actions = prana.ActionRegistry()
    calls: list[str] = []
    caller = anyio.CancelScope()
    release = anyio.Event()

    @actions.action("test.step")
    def step(ctx: prana.NodeContext) -> Any:
        calls.append(ctx.idempotency_key.split(":", 1)[1])
        if ctx.node_key == "b" and where != "async action":
            caller.cancel()  # from inside the run, as a timeout of the caller's would
        return ctx.input

    @actions.action("test.wait")
    async def wait(ctx: prana.NodeContext) -> Any:
        calls.append(ctx.idempotency_key.split(":", 1)[1])
        await release.wait()
        return ctx.input

    keys = ["a", "b", "c", "d"]
    middle = "test.wait" if where == "async action" else "test.step"
    workflow = make_workflow(
        {"start": "manual.trigger", **dict.fromkeys(keys, "test.step"), "b": middle},
        ["start -> a", "a -> b", "b -> c", "c -> d"],
        actions=actions,
        id="chain",
    )
    blocker = make_workflow(
        {"start": "manual.trigger", "hold": "test.wait"}, ["start -> hold"], actions=actions
    )
    durability = "off" if where == "durability off" else "normal"
    async with prana.testing.open_engine(actions=actions, durability=durability) as engine:
        subscription = engine.events()
        if where == "commit in a batch":
            await engine.start(blocker)
        with caller:
            if where == "async action":
                async with anyio.create_task_group() as group:
                    group.start_soon(engine.run, workflow, {"n": 1})
                    await anyio.wait_all_tasks_blocked()  # b waits for release
                    caller.cancel()
            else:
                await engine.run(workflow, {"n": 1})
        assert caller.cancelled_caught
        release.set()
        await engine.wait_idle()
        (listed,) = await engine.list_executions(workflow="chain")
        execution = await engine.get(listed.id)
    assert execution.status == "completed"
    assert execution.order == ["start", *keys]
    assert execution.output == {"n": 1}
    assert sorted(call for call in calls if not call.startswith("hold")) == [
        f"{key}:0" for key in keys
    ]  # each node ran once
    names = [
        (type(event).__name__, getattr(event, "node_key", None))
        async for event in subscription
        if event.execution_id == execution.id
    ]
    assert names == [
        ("ExecutionStarted", None),
        *[(kind, key) for key in ["start", *keys] for kind in ("NodeStarted", "NodeCompleted")],
        ("ExecutionCompleted", None),
    ]


async def test_cancelling_resume_leaves_the_execution_to_finish_in_the_engine() -> None:
    actions = prana.ActionRegistry()
    calls: list[str] = []
    caller = anyio.CancelScope()

    @actions.action("test.step")
    def step(ctx: prana.NodeContext) -> Any:
        calls.append(ctx.node_key)
        if ctx.node_key == "b":
            caller.cancel()
        return ctx.input

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "approval": "wait.webhook",
            "a": "test.step",
            "b": "test.step",
            "c": "test.step",
        },
        ["start -> approval", "approval -> a", "a -> b", "b -> c"],
        actions=actions,
    )
    async with prana.testing.open_engine(actions=actions) as engine:
        waiting = await engine.run(workflow)
        assert waiting.status == "suspended"
        with caller:
            await engine.resume(waiting.id, {"approved": True})
        assert caller.cancelled_caught
        await engine.wait_idle()
        done = await engine.get(waiting.id)
    assert done.status == "completed"
    assert done.order == ["start", "approval", "a", "b", "c"]
    assert done.output == {"approved": True}
    assert calls == ["a", "b", "c"]


async def test_finished_executions_can_be_read_back() -> None:
    async with prana.Engine() as engine:
        done = await engine.run(branching_workflow(), {"go": True})
        failed = await engine.run(
            make_workflow(
                {"start": "manual.trigger", "x": ("core.fail", {"message": "m"})}, ["start -> x"]
            )
        )
        again = await engine.get(done.id)
        assert again.status == "completed"
        assert again.order == done.order
        assert again.output == done.output
        assert again.skipped == ("no",)
        assert [e.id for e in await engine.list_executions(status="failed")] == [failed.id]
        assert {e.id for e in await engine.list_executions(workflow="test")} == {done.id, failed.id}
        with pytest.raises(prana.ExecutionNotFound, match="no execution has id 'nope'"):
            await engine.get("nope")


async def test_an_engine_must_be_open() -> None:
    engine = prana.Engine()
    with pytest.raises(prana.PranaError, match="async with Engine"):
        await engine.run(branching_workflow())


async def test_leaving_the_engine_stops_running_executions() -> None:
    actions = prana.ActionRegistry()

    @actions.action("test.forever")
    async def forever(ctx: prana.NodeContext) -> Any:
        await anyio.sleep_forever()

    workflow = make_workflow(
        {"start": "manual.trigger", "wait": "test.forever"}, ["start -> wait"], actions=actions
    )
    async with prana.Engine(actions=actions) as engine:
        handle = await engine.start(workflow)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
    assert handle.status == "running"
    with pytest.raises(prana.PranaError, match="the engine stopped before execution"):
        await handle.result()


async def test_leaving_the_engine_waits_for_a_cancelled_action_to_tidy_up() -> None:
    tidied: list[str] = []
    actions = prana.ActionRegistry()

    @actions.action("test.tidy")
    async def tidy(ctx: prana.NodeContext) -> Any:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):  # holds against the engine's cancel
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
                tidied.append(ctx.node_key)

    workflow = make_workflow(
        {"start": "manual.trigger", "tidy": "test.tidy"}, ["start -> tidy"], actions=actions
    )
    async with prana.Engine(actions=actions) as engine:
        for _ in range(3):
            await engine.start(workflow)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
    assert tidied == ["tidy"] * 3


async def test_an_error_in_the_engine_block_comes_out_as_itself() -> None:
    with pytest.raises(KeyError, match="mine"):
        async with prana.Engine():
            raise KeyError("mine")


async def test_invalid_workflow_is_refused_before_anything_starts() -> None:
    async with prana.Engine() as engine:
        with pytest.raises(prana.WorkflowValidationError, match=r"unknown action 'core\.nop'"):
            await engine.run(
                {
                    "id": "x",
                    "nodes": [
                        {"key": "s", "type": "manual.trigger"},
                        {"key": "a", "type": "core.nop"},
                    ],
                }
            )


async def test_a_start_with_an_idempotency_key_starts_once(tmp_path: Any) -> None:
    workflow = branching_workflow()
    async with prana.Engine(store=tmp_path / "prana.db") as engine:
        first = await engine.start(workflow, {"go": True}, idempotency_key="order-7")
        with pytest.raises(prana.ExecutionExists) as live:  # its supervisor answers
            await engine.start(workflow, {"go": True}, idempotency_key="order-7")
        await first.result()
        with pytest.raises(prana.ExecutionExists) as again:
            await engine.start(workflow, {"go": False}, idempotency_key="order-7")
        other = await engine.start(workflow, {"go": False}, idempotency_key="order-8")
        await other.result()
    assert again.value.execution_id == live.value.execution_id == first.id
    assert "order-7" in str(again.value)
    assert live.value.same_input
    assert not again.value.same_input
    assert "with a different input" in str(again.value)
    async with prana.Engine(store=tmp_path / "prana.db") as engine:
        with pytest.raises(prana.ExecutionExists) as stored_same:  # read from the store
            await engine.start(workflow, {"go": True}, idempotency_key="order-7")
        with pytest.raises(prana.ExecutionExists) as stored_other:
            await engine.start(workflow, {"go": False}, idempotency_key="order-7")
        stored = await engine.list_executions()
        kept = await engine.get(first.id)
    assert sorted(execution.id for execution in stored) == sorted([first.id, other.id])
    assert kept.order == ["start", "check", "yes"]  # the first start's input, not the second
    assert (stored_same.value.same_input, stored_other.value.same_input) == (True, False)


async def test_a_webhook_request_sent_again_is_the_same_if_its_body_is() -> None:
    # A sender's deliveries of one request differ in headers (a date, a signature's
    # time); the body tells one request from another.
    workflow = make_workflow(
        {"hook": ("webhook.trigger", {"path": "orders"}), "take": "core.noop"}, ["hook -> take"]
    )
    async with prana.Engine(env={}) as engine:
        engine.register(workflow)
        sent = {"body": {"amount": 5}, "idempotency_key": "d-1"}
        first = await engine.start_webhook("orders", headers={"date": "Mon"}, **sent)
        await first.result()
        with pytest.raises(prana.ExecutionExists) as again:
            await engine.start_webhook("orders", headers={"date": "Tue"}, **sent)
        with pytest.raises(prana.ExecutionExists) as other:
            await engine.start_webhook(
                "orders", headers={"date": "Mon"}, body={"amount": 6}, idempotency_key="d-1"
            )
    assert again.value.execution_id == other.value.execution_id == first.id
    assert again.value.same_input
    assert not other.value.same_input
    assert "with a different body" in str(other.value)


async def test_a_long_definition_is_kept_and_read_back_whole(tmp_path: Any) -> None:
    # Past 1 000 nodes a definition is made into data on a worker thread, and
    # written on the store's thread when heavy: what another engine reads is it.
    keys = ["start", *(f"n{i}" for i in range(1200))]
    definition = {
        "id": "long",
        "nodes": [{"key": "start", "type": "manual.trigger"}]
        + [{"key": key, "type": "core.noop", "params": {"note": "x" * 200}} for key in keys[1:]],
        "connections": [{"from": a, "to": b} for a, b in itertools.pairwise(keys)],
    }
    async with prana.Engine(store=tmp_path / "prana.db", env={}) as engine:
        served = await engine.keep_serving(definition)
        done = await engine.run(served, {"n": 1})
    async with prana.Engine(store=tmp_path / "prana.db", env={}) as engine:
        (kept,) = engine.served()
        ran = await engine.workflow_of(done.id)
    assert done.status == "completed"
    assert done.output == {"n": 1}
    assert prana.workflow_to_dict(kept) == prana.workflow_to_dict(served)
    assert prana.workflow_to_dict(ran) == prana.workflow_to_dict(served)
    assert [node.key for node in ran.nodes] == keys


async def test_load_workflow_checks_a_long_definition_while_the_apps_tasks_go_on() -> None:
    # Checking thousands of nodes takes a while: on a worker thread, so that the
    # app's other tasks keep running; the workflow it gives then runs.
    keys = ["start", *(f"n{i}" for i in range(3000))]
    definition = {
        "id": "long",
        "nodes": [{"key": "start", "type": "manual.trigger"}]
        + [{"key": key, "type": "core.noop"} for key in keys[1:]],
        "connections": [{"from": a, "to": b} for a, b in itertools.pairwise(keys)],
    }
    broken = {**definition, "nodes": [*definition["nodes"], {"key": "x", "type": "no.such"}]}
    turns = 0
    loading = True

    async def the_apps_task() -> None:
        nonlocal turns
        while loading:
            turns += 1
            await anyio.lowlevel.checkpoint()

    async with prana.Engine() as engine, anyio.create_task_group() as group:
        group.start_soon(the_apps_task)
        await anyio.lowlevel.checkpoint()
        before = turns
        workflow = await engine.load_workflow(definition)
        during = turns - before
        loading = False
        with pytest.raises(prana.WorkflowValidationError) as refused:
            await engine.load_workflow(broken)
        done = await engine.run(workflow)
    assert during > 10  # it ran again and again while the definition was checked
    assert (workflow.id, len(workflow.nodes)) == ("long", 3001)
    assert done.status == "completed"
    assert done.order == keys
    assert [problem.path for problem in refused.value.problems] == ["nodes[3001].type"]
    assert "unknown action 'no.such'" in str(refused.value)
