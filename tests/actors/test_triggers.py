"""Trigger kinds: webhook requests, function arguments, cron schedules, and several
triggers in one workflow."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import prana
from prana.actors._schedules import schedule_execution_id
from prana.storage import SQLiteStore
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

# 2030-03-17T17:46:40Z; the next quarter hour is 18:00.
MOMENT = 1_900_000_000.0
QUARTER = 1_900_000_800.0


def iso(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


def order_hook(path: str = "orders", **params: Any) -> prana.Workflow:
    return make_workflow(
        {
            "hook": ("webhook.trigger", {"path": path, **params}),
            "take": (
                "data.set",
                {
                    "values": {
                        "amount": "{{ trigger.body.amount }}",
                        "signature": "{{ trigger.headers['x-signature'] }}",
                        "page": "{{ trigger.query.page }}",
                        "method": "{{ trigger.method }}",
                        "kind": "{{ trigger.kind }}",
                    }
                },
            ),
        },
        ["hook -> take"],
        id=f"hook_{path.replace('/', '_')}",
    )


async def test_a_webhook_request_starts_the_workflow_that_answers_it() -> None:
    async with prana.Engine(env={}, workflows=[order_hook()]) as engine:
        handle = await engine.start_webhook(
            "/orders/",
            headers={"X-Signature": "abc"},
            query={"page": "2"},
            body={"amount": 30},
        )
        done = await handle.result()
    assert done.status == "completed"
    assert done.output == {
        "amount": 30,
        "signature": "abc",
        "page": "2",
        "method": "POST",
        "kind": "webhook",
    }
    assert done.input == {
        "method": "POST",
        "path": "orders",
        "headers": {"x-signature": "abc"},
        "query": {"page": "2"},
        "body": {"amount": 30},
    }


async def test_a_request_nobody_answers_is_refused_with_what_is_answered() -> None:
    async with prana.Engine(env={}, workflows=[order_hook()]) as engine:
        with pytest.raises(prana.TriggerError) as unknown:
            await engine.start_webhook("invoices", body={})
        with pytest.raises(prana.TriggerError) as wrong_method:
            await engine.start_webhook("orders", method="GET")
        assert await engine.list_executions() == []
    assert str(unknown.value) == (
        "no served workflow answers POST /invoices; webhooks answered: POST /orders"
    )
    assert "no served workflow answers GET /orders; /orders answers POST" in str(wrong_method.value)
    assert (unknown.value.methods, wrong_method.value.methods) == ((), ("POST",))


async def test_two_workflows_cannot_answer_one_webhook() -> None:
    async with prana.Engine(env={}, workflows=[order_hook()]) as engine:
        clash = order_hook()
        other = prana.Workflow(id="other_orders", nodes=clash.nodes, connections=clash.connections)
        with pytest.raises(prana.TriggerError, match="is answered by workflow 'hook_orders'"):
            engine.register(other)
        # The same workflow in a new version takes its own webhook over.
        newer = prana.Workflow(
            id="hook_orders", version=2, nodes=clash.nodes, connections=clash.connections
        )
        engine.register(newer)
        done = await (await engine.start_webhook("orders", body={"amount": 1})).result()
    assert done.workflow_version == 2


async def test_a_webhook_trigger_started_by_hand_takes_a_request() -> None:
    async with prana.Engine(env={}) as engine:
        request = {"body": {"amount": 5}, "query": {"page": 1}, "headers": {"X-Signature": 7}}
        done = await engine.run(order_hook(), request)
        with pytest.raises(prana.TriggerError, match="does not take 'amount'"):
            await engine.run(order_hook(), {"amount": 5})
    assert done.status == "completed"
    assert done.output["amount"] == 5
    assert (done.output["page"], done.output["signature"]) == ("1", "7")  # text, as in HTTP


def function_workflow() -> prana.Workflow:
    return make_workflow(
        {
            "call": (
                "function.trigger",
                {"arguments": ["customer", "amount"], "defaults": {"currency": "EUR"}},
            ),
            "bill": (
                "data.set",
                {"values": {"text": "{{ trigger.arguments.customer }} owes {{ input.amount }} "
                            "{{ trigger.arguments.currency }}"}},
            ),
        },
        ["call -> bill"],
    )  # fmt: skip


async def test_a_function_trigger_takes_named_arguments_with_defaults() -> None:
    async with prana.Engine(env={}) as engine:
        done = await engine.run(function_workflow(), {"customer": "ann", "amount": 12})
        with pytest.raises(prana.TriggerError) as missing:
            await engine.run(function_workflow(), {"customer": "ann"})
        with pytest.raises(prana.TriggerError) as unknown:
            await engine.run(function_workflow(), {"customer": "ann", "amount": 1, "ammount": 2})
        with pytest.raises(prana.TriggerError, match="starts from named arguments"):
            await engine.run(function_workflow(), [1, 2])
        stored = await engine.list_executions()
    assert done.output == {"text": "ann owes 12 EUR"}
    assert done.input == {"customer": "ann", "amount": 12, "currency": "EUR"}
    assert "is missing argument 'amount'" in str(missing.value)
    assert (
        "unknown argument 'ammount' (did you mean 'amount'?); it takes customer, amount, currency"
        in str(unknown.value)
    )
    assert [execution.id for execution in stored] == [done.id]  # refused ones saved nothing


def test_trigger_parameters_are_checked_when_loading() -> None:
    with pytest.raises(prana.WorkflowValidationError) as caught:
        make_workflow(
            {
                "tick": ("schedule.trigger", {"cron": "61 * * * *"}),
                "zone": ("schedule.trigger", {"cron": "@daily", "timezone": "Mars/Base"}),
                "hook": ("webhook.trigger", {"method": "FETCH", "path": "{{ vars.p }}"}),
                "call": ("function.trigger", {"arguments": ["a"], "defaults": {"a": 1}}),
                "after": "core.noop",
            },
            ["tick -> after", "zone -> after", "hook -> after", "call -> after"],
        )
    assert [str(problem) for problem in caught.value.problems] == [
        "nodes[0].params.cron: 61 is out of range in the minute field; the minute field "
        "takes 0-59, '*', ranges a-b, steps */n and lists a,b",
        "nodes[1].params.cron: unknown timezone 'Mars/Base'; use an IANA name like "
        "'Europe/Berlin' or 'UTC'",
        "nodes[2].params.path: a trigger's parameters are fixed; templates are not allowed",
        "nodes[2].params.method: 'FETCH' is not one of GET, POST, PUT, PATCH, DELETE",
        "nodes[3].params.defaults.a: 'a' is a required argument; it cannot have a default too",
    ]


def report(cron: str = "*/15 * * * *", **params: Any) -> prana.Workflow:
    return make_workflow(
        {
            "tick": ("schedule.trigger", {"cron": cron, **params}),
            "note": (
                "data.set",
                {"values": {"at": "{{ trigger.scheduled_at }}", "cron": "{{ trigger.cron }}"}},
            ),
        },
        ["tick -> note"],
        id="report",
    )


async def sleeping_until(clock: VirtualClock, expected: float | None) -> float | None:
    """What the engine sleeps until once it settles: ``expected``, or a failure."""
    with anyio.fail_after(5):
        await anyio.wait_all_tasks_blocked()
        while clock.next_deadline != expected:
            await anyio.wait_all_tasks_blocked()
    return clock.next_deadline


async def completed(events: prana.Subscription, count: int) -> list[str]:
    """Ids of the next ``count`` executions to complete."""
    ids = []
    with anyio.fail_after(10):
        async for event in events:
            if isinstance(event, prana.events.ExecutionCompleted):
                ids.append(event.execution_id)
                if len(ids) == count:
                    return ids
    raise AssertionError("the event stream ended")


async def outputs(engine: prana.Engine) -> list[Any]:
    """The scheduled times the report's executions saw, in order."""
    found = [
        await engine.get(execution.id)
        for execution in await engine.list_executions(workflow="report")
    ]
    return sorted(execution.output["at"] for execution in found)


async def test_a_schedule_fires_at_each_cron_time_while_the_engine_runs() -> None:
    clock = VirtualClock(start=MOMENT)
    async with open_engine(clock=clock, workflows=[report()]) as engine:
        events = engine.events()
        assert await sleeping_until(clock, QUARTER) == QUARTER
        clock.set(QUARTER)
        (first,) = await completed(events, 1)
        clock.set(QUARTER + 3600)  # four quarters pass at once: one firing, the latest
        await completed(events, 1)
        assert await sleeping_until(clock, QUARTER + 4500) == QUARTER + 4500
        done = await engine.get(first)
        assert await outputs(engine) == [iso(QUARTER), iso(QUARTER + 3600)]
    assert done.id == schedule_execution_id("report", "tick", QUARTER)
    assert done.output == {"at": "2030-03-17T18:00:00+00:00", "cron": "*/15 * * * *"}
    assert done.trigger == "tick"


async def test_a_schedule_keeps_its_place_across_restarts_and_fires_once_for_missed_times(
    tmp_path: Any,
) -> None:
    clock = VirtualClock(start=MOMENT)
    path = tmp_path / "s.db"
    async with open_engine(path=path, clock=clock, workflows=[report()]) as engine:
        events = engine.events()
        clock.set(QUARTER)
        await completed(events, 1)
    clock.set(QUARTER + 3 * 3600 + 60)  # three hours with no engine
    async with open_engine(path=path, clock=clock, workflows=[report()]) as engine:
        events = engine.events()
        await completed(events, 1)  # at once, for the latest time missed
        assert await sleeping_until(clock, QUARTER + 3 * 3600 + 900) == QUARTER + 3 * 3600 + 900
        assert await outputs(engine) == [iso(QUARTER), iso(QUARTER + 3 * 3600)]
    # Without the workflow registered, nothing fires.
    clock.set(QUARTER + 6 * 3600)
    async with open_engine(path=path, clock=clock) as engine:
        assert await sleeping_until(clock, None) is None
        assert len(await outputs(engine)) == 2


async def test_a_changed_cron_starts_over_from_now(tmp_path: Any) -> None:
    clock = VirtualClock(start=MOMENT)
    path = tmp_path / "s.db"
    async with open_engine(path=path, clock=clock, workflows=[report()]):
        assert await sleeping_until(clock, QUARTER) == QUARTER
    nine = datetime.datetime(2030, 3, 18, 9, tzinfo=datetime.UTC).timestamp()
    async with open_engine(path=path, clock=clock, workflows=[report("0 9 * * *")]):
        assert await sleeping_until(clock, nine) == nine


async def test_two_engines_serving_one_schedule_fire_each_time_once(tmp_path: Any) -> None:
    clock = VirtualClock(start=MOMENT)
    path = tmp_path / "s.db"
    async with (
        open_engine(path=path, clock=clock, workflows=[report()]) as one,
        open_engine(path=path, clock=clock, workflows=[report()]) as two,
    ):
        streams = [one.events(), two.events()]

        async def watch(events: prana.Subscription, group: anyio.abc.TaskGroup) -> None:
            await completed(events, 1)
            group.cancel_scope.cancel()

        for step in range(1, 4):
            clock.set(MOMENT + 900 * step)
            async with anyio.create_task_group() as group:  # whichever engine fired it
                for stream in streams:
                    group.start_soon(watch, stream, group)
        seen = await outputs(one)
    assert seen == [
        iso(QUARTER), iso(QUARTER + 900), iso(QUARTER + 1800)
    ]  # fmt: skip


async def test_engines_serving_different_schedules_leave_it_to_the_last_armed(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # An engine still serving an older version (every 15 minutes) and one serving a
    # newer (every 10), as during a deploy: the schedule follows the one armed last;
    # the other stops firing it at its next time and says so. Nothing fires twice.
    clock = VirtualClock(start=MOMENT)
    path = tmp_path / "s.db"
    ten = QUARTER - 600  # 17:50
    with caplog.at_level(logging.WARNING, logger="prana"):
        async with (
            open_engine(path=path, clock=clock, workflows=[report()]) as old,
            open_engine(path=path, clock=clock, workflows=[report("*/10 * * * *")]) as new,
        ):
            events = new.events()
            for moment in (ten, QUARTER, QUARTER + 600):
                clock.set(moment)
                await completed(events, 1)
            assert await sleeping_until(clock, QUARTER + 1200) == QUARTER + 1200
            # The old engine's refused claim for 18:00 is answered on the store's
            # thread, which wait_all_tasks_blocked does not wait for.
            with anyio.fail_after(5):
                while not caplog.records:
                    await anyio.lowlevel.checkpoint()
            seen = await outputs(old)
    assert seen == [iso(ten), iso(QUARTER), iso(QUARTER + 600)]
    assert [record.getMessage() for record in caplog.records] == [
        "schedule tick of workflow report now follows '*/10 * * * * UTC', set by another "
        "engine on this store; this engine (which has '*/15 * * * * UTC') no longer fires it"
    ]


async def test_a_firing_claimed_before_a_crash_is_started_by_the_next_engine(
    tmp_path: Any,
) -> None:
    clock = VirtualClock(start=QUARTER + 60)
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    try:  # what an engine leaves when it dies between claiming a time and starting it
        await store.arm_schedule("report", "tick", spec="*/15 * * * * UTC", first_at=QUARTER)
        claimed = await store.advance_schedule(
            "report", "tick", due_at=QUARTER, next_at=QUARTER + 900, pending_at=QUARTER
        )
    finally:
        await store.aclose()
    assert claimed
    async with open_engine(path=path, clock=clock, workflows=[report()]) as engine:
        started = await engine.wait(schedule_execution_id("report", "tick", QUARTER))
        assert await sleeping_until(clock, QUARTER + 900) == QUARTER + 900
    async with open_engine(path=path, clock=clock, workflows=[report()]) as engine:
        assert await outputs(engine) == [iso(QUARTER)]  # started once
    assert started.status == "completed"


async def test_each_trigger_starts_its_own_part_of_the_workflow() -> None:
    workflow = make_workflow(
        {
            "hook": ("webhook.trigger", {"path": "mixed"}),
            "tick": ("schedule.trigger", {"cron": "@hourly"}),
            "call": "function.trigger",
            "from_hook": ("data.set", {"values": {"body": "{{ trigger.body }}"}}),
            "from_tick": ("data.set", {"values": {"cron": "{{ trigger.cron }}"}}),
            "from_call": ("data.set", {"values": {"args": "{{ trigger.arguments }}"}}),
            "shared": "core.noop",
        },
        [
            "hook -> from_hook", "tick -> from_tick", "call -> from_call",
            "from_hook -> shared", "from_tick -> shared", "from_call -> shared",
        ],
        id="mixed",
    )  # fmt: skip
    clock = VirtualClock(start=MOMENT)
    async with prana.Engine(env={}, clock=clock, workflows=[workflow]) as engine:
        events = engine.events()
        hooked = await (await engine.start_webhook("mixed", body=[1])).result()
        called = await engine.run(workflow, {"x": 1}, trigger="call")
        clock.jump()
        *_, ticked_id = await completed(events, 3)
        ticked = await engine.get(ticked_id)
    assert hooked.order == ["hook", "from_hook", "shared"]
    assert hooked.output == {"body": [1]}
    assert called.order == ["call", "from_call", "shared"]
    assert called.output == {"args": {"x": 1}}
    assert ticked.order == ["tick", "from_tick", "shared"]
    assert ticked.output == {"cron": "@hourly"}


async def test_a_workflow_registered_while_the_engine_runs_gets_its_schedule() -> None:
    clock = VirtualClock(start=MOMENT)
    async with prana.Engine(env={}, clock=clock) as engine:
        events = engine.events()
        assert await sleeping_until(clock, None) is None
        engine.register(report())
        assert await sleeping_until(clock, QUARTER) == QUARTER
        clock.set(QUARTER)
        (fired,) = await completed(events, 1)
    assert fired == schedule_execution_id("report", "tick", QUARTER)


async def test_engines_without_schedules_leave_them_alone() -> None:
    clock = VirtualClock(start=MOMENT)
    async with prana.Engine(env={}, clock=clock, workflows=[report()], schedules=False):
        assert await sleeping_until(clock, None) is None


async def test_a_paused_schedule_lets_its_times_pass_and_fires_again_once_resumed(
    tmp_path: Any,
) -> None:
    clock = VirtualClock(start=MOMENT)
    async with open_engine(path=tmp_path / "p.db", clock=clock, workflows=[report()]) as engine:
        events = engine.events()
        (armed,) = await engine.schedules()
        paused = await engine.pause_schedule("report", "tick")
        assert await sleeping_until(clock, QUARTER) == QUARTER
        clock.set(QUARTER)  # its time passes while it is paused
        assert await sleeping_until(clock, QUARTER + 900) == QUARTER + 900
        assert await engine.list_executions() == []
        resumed = await engine.resume_schedule("report", "tick")
        clock.set(QUARTER + 900)
        (fired,) = await completed(events, 1)
        handle = await engine.fire_schedule("report", "tick")  # now, out of its times
        by_hand = await handle.result()
        with pytest.raises(prana.PranaError, match="no schedule 'tock' of workflow 'report'"):
            await engine.pause_schedule("report", "tock")
        with pytest.raises(prana.PranaError, match="'note' is not a schedule trigger"):
            await engine.fire_schedule("report", "note")
    assert armed == prana.ScheduleInfo(
        workflow_id="report", trigger="tick", cron="*/15 * * * * UTC", next_at=QUARTER,
        paused=False,
    )  # fmt: skip
    assert paused.paused
    assert (resumed.paused, resumed.next_at) == (False, QUARTER + 900)
    assert fired == schedule_execution_id("report", "tick", QUARTER + 900)
    assert by_hand.output["at"] == iso(QUARTER + 900)  # the clock's now
    assert by_hand.id != fired


def test_how_a_webhook_is_answered_is_checked_when_loading() -> None:
    with pytest.raises(prana.WorkflowValidationError) as caught:
        make_workflow(
            {
                "hook": ("webhook.trigger", {"respond": "by_node", "respond_within": 0}),
                "other": (
                    "webhook.trigger",
                    {"path": "b", "respond": "later", "idempotency_header": "X Delivery"},
                ),
                "after": "core.noop",
            },
            ["hook -> after", "other -> after"],
        )
    with pytest.raises(prana.WorkflowValidationError) as answered_badly:
        make_workflow(
            {
                "hook": ("webhook.trigger", {"respond": "by_node"}),
                "answer": (
                    "webhook.respond",
                    {"status": 99, "headers": {"Content-Length": "3", "bad name": "x"}},
                ),
            },
            ["hook -> answer"],
        )
    assert [str(problem) for problem in caught.value.problems] == [
        "nodes[0].params.respond_within: must be a number of seconds above 0 and at most 300, "
        "not 0",
        "nodes[1].params.respond: 'later' is not one of immediately, when_done, by_node: answer "
        "at once, with the execution's output, or with what a webhook.respond node builds",
        "nodes[1].params.idempotency_header: 'X Delivery' is not a header name; name the header "
        "whose value a sender keeps when it sends a request again, like X-GitHub-Delivery",
        "nodes[0].params.respond: is by_node, but the workflow has no webhook.respond node to "
        "answer the request: add one, or respond when_done (with the execution's output)",
    ]
    assert [str(problem) for problem in answered_badly.value.problems] == [
        "nodes[1].params.status: must be an HTTP status from 200 to 599, not 99",
        "nodes[1].params.headers.Content-Length: Content-Length is the server's to write",
        "nodes[1].params.headers.bad name: 'bad name' is not a header name",
    ]


async def test_the_engine_says_how_a_webhook_is_answered() -> None:
    answering = make_workflow(
        {
            "hook": ("webhook.trigger", {"path": "ask", "respond": "by_node", "respond_within": 5}),
            "answer": ("webhook.respond", {"status": 202}),  # no body: its input
        },
        ["hook -> answer"],
        id="ask",
    )
    async with prana.Engine(env={}, workflows=[answering, order_hook()]) as engine:
        route = engine.webhook("post", "/ask/")
        plain = engine.webhook("POST", "orders")
        handle = await engine.start_webhook("ask", body={"q": 1})
        done = await handle.result()
    assert (route.workflow.id, route.trigger, route.respond) == ("ask", "hook", "by_node")
    assert (route.respond_within, route.responders) == (5, frozenset({"answer"}))
    assert (plain.respond, plain.respond_within, plain.responders) == ("immediately", 30, set())
    assert done.output == {"status": 202, "headers": {}, "body": done.input}
    assert done.input["body"] == {"q": 1}
