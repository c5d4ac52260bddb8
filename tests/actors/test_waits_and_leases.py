"""Waits until a moment, durations, group commit, migrations, and lease take-over."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from prana.storage import SQLiteStore, _schema
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow, workflow_dict

MOMENT = 1_900_000_000.0  # 2030-03-17T17:46:40Z


def until_workflow(at: str) -> prana.Workflow:
    return make_workflow(
        {"start": "manual.trigger", "wait": ("wait.until", {"at": at}), "after": "core.noop"},
        ["start -> wait", "wait -> after"],
    )


async def test_wait_until_a_moment_and_a_moment_already_past() -> None:
    clock = VirtualClock(start=MOMENT - 60)
    async with open_engine(clock=clock) as engine:
        waiting = await engine.run(until_workflow("2030-03-17T18:46:40+01:00"), "x")
        assert waiting.status == "suspended"
        assert waiting.suspensions[0].wake_at == MOMENT
        assert clock.jump() == MOMENT
        done = await engine.wait(waiting.id)
        past = await engine.run(until_workflow("2020-01-01T00:00:00Z"), "y")
    assert done.order == ["start", "wait", "after"]
    assert done.output == "x"
    assert past.status == "completed"
    assert past.output == "y"


async def test_wait_until_the_next_time_of_a_cron_expression() -> None:
    clock = VirtualClock(start=MOMENT)  # a Sunday, 18:46:40 in Berlin
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "wait": ("wait.until", {"cron": "30 9 * * mon-fri", "timezone": "Europe/Berlin"}),
            "after": "core.noop",
        },
        ["start -> wait", "wait -> after"],
    )
    async with open_engine(clock=clock) as engine:
        waiting = await engine.run(workflow, "x")
        monday = waiting.suspensions[0].wake_at
        assert clock.jump() == monday
        done = await engine.wait(waiting.id)
    assert monday == 1_900_053_000.0  # 2030-03-18T09:30+01:00
    assert done.output == "x"


def test_wait_parameters_are_checked_when_loading() -> None:
    actions = prana.ActionRegistry()
    with pytest.raises(prana.WorkflowValidationError) as caught:
        prana.load_workflow(
            workflow_dict(
                {
                    "start": "manual.trigger",
                    "a": ("wait.until", {"at": "2030-01-01T09:00:00"}),
                    "b": ("wait.interval", {"duration": "soon"}),
                    "c": ("wait.webhook", {"timeout": "-3s"}),
                },
                ["start -> a", "a -> b", "b -> c"],
            ),
            actions=actions,
        )
    assert [str(problem) for problem in caught.value.problems] == [
        "nodes[1].params.at: '2030-01-01T09:00:00' has no timezone; add one, such as Z or +01:00",
        "nodes[2].params.duration: 'soon' is not a duration; write it like 90s, 15m, 2h, 3d or 1h30m",
        "nodes[3].params.timeout: '-3s' is not a duration; write it like 90s, 15m, 2h, 3d or 1h30m",
    ]


async def test_a_duration_from_a_template_that_is_wrong_fails_the_node() -> None:
    workflow = make_workflow(
        {"start": "manual.trigger", "wait": ("wait.interval", {"duration": "{{ input.delay }}"})},
        ["start -> wait"],
    )
    async with open_engine() as engine:
        done = await engine.run(workflow, {"delay": "later"})
    assert done.status == "failed"
    assert done.error is not None
    assert (done.error.code, done.error.node_key) == ("invalid_params", "wait")
    assert "'later' is not a duration" in done.error.message


async def test_concurrent_executions_share_commits() -> None:
    # Each node's result is saved before the next runs (its action is not pure).
    actions = prana.ActionRegistry()

    @actions.action("test.step")
    def step(ctx: prana.NodeContext) -> Any:
        return ctx.input

    workflow = make_workflow(
        {"start": "manual.trigger", **{f"n{i}": "test.step" for i in range(5)}},
        ["start -> n0", *(f"n{i} -> n{i + 1}" for i in range(4))],
        actions=actions,
    )
    outputs: dict[int, Any] = {}

    async def run(engine: prana.Engine, n: int) -> None:
        outputs[n] = (await engine.run(workflow, n)).output

    async with open_engine(actions=actions) as engine:
        async with anyio.create_task_group() as group:
            for n in range(50):
                group.start_soon(run, engine, n)
        statistics = engine.statistics()
        assert statistics.checkpoints >= 50 * 6
        # Many per transaction (fewer on a store that takes several commits at once).
        assert statistics.commits < statistics.checkpoints / 2, statistics
    assert outputs == {n: n for n in range(50)}
    # Every node run counted, with its duration; every transaction timed.
    assert statistics.node_runs == {"completed": 50 * 6, "failed": 0, "suspended": 0}
    assert statistics.node_run_times.count == 50 * 6
    assert statistics.commit_times.count == statistics.commits
    assert statistics.commit_times.total > 0


async def test_a_newer_prana_migrates_the_schema_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prana.db"
    async with open_engine(path=path) as engine:
        kept = await engine.run(make_workflow({"start": "manual.trigger"}, []), "kept")
    migration = "CREATE TABLE audit_notes (execution_id TEXT, note TEXT);"
    monkeypatch.setattr(_schema, "MIGRATIONS", (*_schema.MIGRATIONS, migration))
    monkeypatch.setattr("prana.storage._sqlite_file.MIGRATIONS", (*_schema.MIGRATIONS,))
    monkeypatch.setattr("prana.storage._sqlite_file.LATEST", len(_schema.MIGRATIONS))
    store = SQLiteStore(path)
    await store.open()
    await store.aclose()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == _schema.LATEST + 1
        assert db.execute("SELECT count(*) FROM audit_notes").fetchone()[0] == 0
        assert (
            db.execute("SELECT status FROM executions WHERE id = ?", (kept.id,)).fetchone()[0]
            == "completed"
        )


@pytest.mark.single_backend("asyncio")
async def test_an_engine_takes_over_when_another_stops_renewing_its_lease(tmp_path: Path) -> None:
    path = tmp_path / "prana.db"
    started, release = anyio.Event(), anyio.Event()
    calls: list[str] = []
    actions = prana.ActionRegistry()

    @actions.action("test.hold")
    async def hold(ctx: prana.NodeContext) -> str:
        calls.append(ctx.idempotency_key)
        if len(calls) == 1:  # the first engine's run: it hangs, as in a frozen process
            started.set()
            await release.wait()
        return "held"

    workflow = make_workflow(
        {"start": "manual.trigger", "hold": "test.hold", "after": "core.noop"},
        ["start -> hold", "hold -> after"],
        actions=actions,
    )
    # The first engine renews its leases far too rarely: as if its process had frozen.
    async with open_engine(path=path, actions=actions, lease=0.3, heartbeat=3600) as first:
        handle = await first.start(workflow, 1)
        await started.wait()
        # Once its lease is over, the second engine takes the execution over.
        async with open_engine(path=path, actions=actions, lease=0.3, heartbeat=0.05) as second:
            with anyio.fail_after(10):
                done = await second.wait(handle.id)
            release.set()  # the first engine wakes up: its result must not count
            with pytest.raises(prana.PranaError, match="is now run by another engine"):
                await handle.result()
    assert done.status == "completed"
    assert [(run.node_key, run.run_index) for run in done.node_runs] == [
        ("start", 0),
        ("hold", 0),
        ("after", 0),
    ]
    assert calls == [f"{handle.id}:hold:0"] * 2  # run again, with the same idempotency key


async def test_a_wait_set_by_an_engine_that_stopped_is_woken_by_one_already_running(
    tmp_path: Path,
) -> None:
    # The watching engine started before the wait existed, so its start-up did not
    # arm it; its heartbeat finds the timer in the store once it is due.
    path = tmp_path / "prana.db"
    clock = VirtualClock(start=MOMENT)
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "wait": ("wait.interval", {"duration": "1h"}),
            "after": "core.noop",
        },
        ["start -> wait", "wait -> after"],
    )
    async with open_engine(path=path, clock=clock, heartbeat=0.02) as watcher:
        async with open_engine(path=path, clock=clock, heartbeat=3600) as setter:
            waiting = await setter.run(workflow, "later")
        assert waiting.status == "suspended"
        clock.advance(3600)
        with anyio.fail_after(5):
            done = await watcher.wait(waiting.id)
    assert done.status == "completed"
    assert done.order == ["start", "wait", "after"]
    assert done.output == "later"


async def test_an_execution_running_alone_keeps_the_wal_bounded(tmp_path: Path) -> None:
    # Alone, an execution commits its checkpoints on the spot; the WAL is still
    # checkpointed as it grows, beside the commits (about 45 MB of node outputs pass
    # through it here; it is kept to a few times the 4 MB wanted).
    path = tmp_path / "prana.db"
    keys = [f"n{index}" for index in range(300)]
    workflow = make_workflow(
        {"start": "manual.trigger", **dict.fromkeys(keys, "core.noop")},
        [f"{a} -> {b}" for a, b in zip(["start", *keys], keys, strict=False)],
    )
    async with open_engine(path=path) as engine:
        done = await engine.run(workflow, {"blob": "x" * 150_000})
        wal = Path(f"{path}-wal").stat().st_size
    assert done.status == "completed"
    assert len(done.node_runs) == 301
    assert wal < 16 * 1024 * 1024


async def test_a_wait_keeps_the_data_its_action_gave_for_whoever_answers(
    tmp_path: Path,
) -> None:
    # What an approver needs to see travels with the wait: in the execution's
    # suspensions, in the NodeSuspended event, and through a restart.
    actions = prana.ActionRegistry()

    @actions.action("test.ask")
    def ask(ctx: prana.NodeContext) -> prana.Suspend:
        return prana.Suspend(
            kind="approval", token=True, data={"prompt": f"Pay {ctx.input['amount']}?"}
        )

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "ask": "test.ask",
            "form": (
                "wait.webhook",
                {"data": {"fields": ["by"], "about": "{{ input.amount }}"}},
            ),
        },
        ["start -> ask", "ask -> form"],
        actions=actions,
    )
    path = tmp_path / "prana.db"
    async with open_engine(path=path, actions=actions) as engine:
        events = engine.events()
        waiting = await engine.run(workflow, {"amount": 120})
        events.close()
        seen = [event async for event in events if isinstance(event, prana.events.NodeSuspended)]
        assert [s.data for s in waiting.suspensions] == [{"prompt": "Pay 120?"}]
        assert [event.suspension.data for event in seen] == [{"prompt": "Pay 120?"}]
        token = waiting.suspensions[0].token
        assert token is not None
        await engine.resume_token(token, {"amount": 120})
    async with open_engine(path=path, actions=actions) as engine:
        again = await engine.get(waiting.id)
    assert [(s.node_key, s.data) for s in again.suspensions] == [
        ("form", {"fields": ["by"], "about": 120})
    ]


async def test_data_on_a_wait_must_be_json() -> None:
    actions = prana.ActionRegistry()

    @actions.action("test.ask")
    def ask(ctx: prana.NodeContext) -> prana.Suspend:
        return prana.Suspend(kind="approval", token=True, data={"when": object()})

    workflow = make_workflow(
        {"start": "manual.trigger", "ask": "test.ask"}, ["start -> ask"], actions=actions
    )
    async with prana.Engine(actions=actions, env={}) as engine:
        failed = await engine.run(workflow)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "invalid_output"
    assert "Suspend.data.when" in failed.error.message
