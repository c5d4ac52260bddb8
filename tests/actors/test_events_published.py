"""Event triggers: ``engine.publish(name, data)`` starts one execution of every served
workflow whose ``event.trigger`` listens to that name; with an idempotency key, a
repeated publish starts nothing new."""

from __future__ import annotations

from pathlib import Path

import pytest

import prana
from prana.testing import open_engine
from tests.helpers import make_workflow


def listener(id: str, event: str) -> prana.Workflow:
    return make_workflow(
        {
            "on_event": ("event.trigger", {"event": event}),
            "note": (
                "data.set",
                {"values": {"heard": "{{ trigger.event }}", "amount": "{{ trigger.data.amount }}"}},
            ),
        },
        ["on_event -> note"],
        id=id,
    )


async def test_publish_starts_every_listening_workflow_with_the_events_data() -> None:
    workflows = [
        listener("bill", "order.created"),
        listener("ship", "order.created"),
        listener("refund", "order.cancelled"),
    ]
    async with prana.Engine(workflows=workflows, env={}) as engine:
        ids = await engine.publish("order.created", {"amount": 120})
        done = [await engine.wait(execution_id) for execution_id in ids]
        assert await engine.publish("order.shipped", {}) == []  # nobody listens
    assert sorted(execution.workflow_id for execution in done) == ["bill", "ship"]
    for execution in done:
        assert execution.status == "completed"
        assert execution.trigger == "on_event"
        assert execution.output == {"heard": "order.created", "amount": 120}


async def test_a_repeated_publish_with_an_idempotency_key_starts_nothing_new(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prana.db"
    workflows = [listener("bill", "order.created"), listener("ship", "order.created")]
    async with open_engine(path=path, workflows=workflows) as engine:
        first = await engine.publish("order.created", {"amount": 1}, idempotency_key="o-17")
        again = await engine.publish("order.created", {"amount": 1}, idempotency_key="o-17")
        other = await engine.publish("order.created", {"amount": 2}, idempotency_key="o-18")
        for execution_id in first + other:
            await engine.wait(execution_id)
    async with open_engine(path=path, workflows=workflows) as engine:  # another engine
        later = await engine.publish("order.created", {"amount": 1}, idempotency_key="o-17")
        everything = await engine.list_executions(limit=100)
    assert len(first) == 2
    assert again == first == later
    assert set(other).isdisjoint(first)
    assert len(everything) == 4


def test_an_event_trigger_names_its_event_without_templates() -> None:
    for event, message in [
        ("order created", "'order created' is not an event name"),
        ("{{ input.name }}", "templates are not allowed"),
    ]:
        with pytest.raises(prana.WorkflowValidationError, match=message):
            listener("bad", event)
