"""Live events over HTTP: one execution's or every execution's, as server-sent
events, resumable with Last-Event-ID."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import prana
from tests.helpers import make_workflow
from tests.server.client import ServerEvent, read_events, request
from tests.server.conftest import daemon, example, start_waiting


def two_waits() -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "first": ("wait.webhook", {"timeout": "1d"}),
            "second": ("wait.webhook", {"timeout": "1d"}),
            "done": "core.noop",
        },
        ["start -> first", "first -> second", "second -> done"],
        id="two_waits",
    )


def named(events: list[ServerEvent]) -> list[str]:
    return [event.event for event in events]


def ends(events: list[ServerEvent]) -> bool:
    return bool(events) and events[-1].event == "ExecutionSuspended"


async def test_a_stream_starts_with_the_execution_and_follows_it_to_its_end(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        execution = await start_waiting(url, "approval")
        path = f"/api/executions/{execution['id']}/events"
        (token,) = [s["token"] for s in execution["suspensions"]]
        listening = anyio.Event()
        async with anyio.create_task_group() as group:
            streamed: list[tuple[int, list[ServerEvent]]] = []

            async def stream() -> None:
                streamed.append(await read_events(url, path, started=listening))

            group.start_soon(stream)
            await listening.wait()
            answered = await request(url, "POST", f"/api/resume/{token}", {"approved": True})
        ended = await read_events(url, path)
    status, events = streamed[0]
    assert status == 200
    assert answered.json()["status"] == "completed"
    snapshot = events[0]
    assert snapshot.event == "snapshot"
    assert snapshot.data["status"] == "suspended"
    assert int(snapshot.id) == execution["last_event"]
    assert named(events[1:]) == [
        "ExecutionResumed",  # by the token
        "NodeCompleted",  # approval
        "NodeSkipped",  # its timeout's branch
        "NodeStarted",
        "NodeCompleted",  # decision
        "NodeSkipped",  # refused
        "NodeStarted",
        "NodeCompleted",  # pay
        "ExecutionCompleted",
    ]
    numbers = [int(event.id) for event in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(events)))
    assert events[1].data["cause"] == "wait"
    assert events[2].data["node_key"] == "approval"
    assert events[2].data["run"]["output"] == {"approved": True}
    # An ended execution's stream is its snapshot alone.
    assert ended[0] == 200
    assert [(e.event, e.data["status"], int(e.id)) for e in ended[1]] == [
        ("snapshot", "completed", numbers[-1])
    ]


async def test_a_stream_resumed_with_last_event_id_gets_every_event_it_missed(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path / "d.db", [two_waits()]) as url:
        execution = await start_waiting(url, "two_waits")
        path = f"/api/executions/{execution['id']}/events"
        listening = anyio.Event()
        async with anyio.create_task_group() as group:
            first_part: list[ServerEvent] = []

            async def stream() -> None:
                _, events = await read_events(
                    url, path, until=lambda e: len(e) > 1 and ends(e), started=listening
                )
                first_part.extend(events)

            group.start_soon(stream)
            await listening.wait()
            (token,) = [s["token"] for s in execution["suspensions"]]
            await request(url, "POST", f"/api/resume/{token}", {"n": 1})
        # Disconnected; the execution goes on meanwhile.
        now = (await request(url, "GET", f"/api/executions/{execution['id']}")).json()
        (second,) = now["suspensions"]
        await request(url, "POST", f"/api/resume/{second['token']}", {"n": 2})
        last_seen = first_part[-1].id
        _, rest = await read_events(url, path, headers={"Last-Event-ID": str(last_seen)})
        _, stale = await read_events(url, path, headers={"Last-Event-ID": "1"})
    assert named(first_part) == [
        "snapshot",
        "ExecutionResumed",
        "NodeCompleted",
        "NodeStarted",
        "NodeSuspended",
        "ExecutionSuspended",
    ]
    assert named(rest) == [
        "ExecutionResumed",
        "NodeCompleted",
        "NodeStarted",
        "NodeCompleted",
        "ExecutionCompleted",
    ]
    assert [int(event.id) for event in rest] == list(
        range(int(last_seen) + 1, int(last_seen) + 1 + len(rest))
    )
    assert rest[1].data["run"]["output"] == {"n": 2}
    # Events before the log began listening are not held: a snapshot instead.
    assert [(e.event, e.data["status"]) for e in stale] == [("snapshot", "completed")]


async def test_numbers_go_on_across_a_restart_of_the_daemon(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        execution = await start_waiting(url, "approval")
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        path = f"/api/executions/{execution['id']}/events"
        (token,) = [s["token"] for s in execution["suspensions"]]
        listening = anyio.Event()
        async with anyio.create_task_group() as group:
            streamed: list[ServerEvent] = []

            async def stream() -> None:
                headers = {"Last-Event-ID": str(execution["last_event"])}
                streamed.extend(
                    (await read_events(url, path, headers=headers, started=listening))[1]
                )

            group.start_soon(stream)
            await listening.wait()
            await request(url, "POST", f"/api/resume/{token}", {"approved": False})
    # The client was up to date: no snapshot, and the events go on from its number.
    assert named(streamed[:2]) == ["ExecutionResumed", "NodeCompleted"]
    assert [int(event.id) for event in streamed] == list(
        range(execution["last_event"] + 1, execution["last_event"] + 1 + len(streamed))
    )
    assert streamed[-1].event == "ExecutionCompleted"


async def test_the_stream_of_every_execution_and_its_reset(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("order_intake.yaml")]) as url:
        listening = anyio.Event()
        async with anyio.create_task_group() as group:
            seen: list[ServerEvent] = []

            async def stream() -> None:
                _, events = await read_events(
                    url,
                    "/api/events",
                    until=lambda e: [x.event for x in e].count("ExecutionCompleted") == 2,
                    started=listening,
                )
                seen.extend(events)

            group.start_soon(stream)
            await listening.wait()
            shop = {"X-Shop": "berlin"}
            first = (
                await request(url, "POST", "/hooks/orders", {"amount": 1}, headers=shop)
            ).json()
            second = (
                await request(url, "POST", "/hooks/orders", {"amount": 2}, headers=shop)
            ).json()
        _, resumed = await read_events(
            url,
            "/api/events",
            headers={"Last-Event-ID": seen[2].id},
            until=lambda e: len(e) == len(seen) - 3,
        )
        _, stale = await read_events(
            url, "/api/events", headers={"Last-Event-ID": "0000-5"}, until=lambda e: len(e) == 1
        )
        missing = await read_events(url, "/api/executions/" + "0" * 32 + "/events")
    assert seen[0].event == "open"
    ids = {event.data["execution_id"] for event in seen[1:]}
    assert ids == {first["execution_id"], second["execution_id"]}
    positions = [int(event.id.split("-")[1]) for event in seen]
    assert positions == sorted(positions)
    assert resumed == seen[3:]
    assert [event.event for event in stale] == ["reset"]
    assert missing == (404, [])


async def test_a_stream_follows_an_execution_that_another_daemon_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This daemon hears none of the execution's events: it looks in the store.
    monkeypatch.setattr("prana.server._streams.FIRST_LOOK", 0.05)
    db, served = tmp_path / "d.db", [example("approval.yaml")]
    async with daemon(db, served) as one, daemon(db, served) as other:
        execution = await start_waiting(one, "approval")
        (token,) = [s["token"] for s in execution["suspensions"]]
        listening = anyio.Event()
        streamed: list[tuple[int, list[ServerEvent]]] = []

        async def stream() -> None:
            path = f"/api/executions/{execution['id']}/events"
            streamed.append(await read_events(other, path, started=listening))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(stream)
                await listening.wait()
                answered = await request(one, "POST", f"/api/resume/{token}", {"approved": True})
    assert answered.json()["status"] == "completed"
    status, events = streamed[0]
    assert status == 200
    assert [(e.event, e.data["status"]) for e in events] == [
        ("snapshot", "suspended"),
        ("snapshot", "completed"),  # the stream ends with the execution
    ]
    assert int(events[-1].id) == answered.json()["last_event"]
