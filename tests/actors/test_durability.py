"""Durability as a user relies on it: waits, resumes, timers, restarts, versions."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from prana._records import Checkpoint
from prana.actors._ownership import Leases
from prana.actors._writer import BATCH_LIMIT, BATCH_LIMIT_OFF_THE_LOOP, CheckpointWriter
from prana.storage import MemoryStore, SQLiteStore
from prana.storage._schema import STATE_ROW
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

DAY = 86400.0
MOMENT = 1_900_000_000.0  # 2030-03-17T17:46:40Z


def approval_workflow(timeout: str | None = None) -> prana.Workflow:
    params = {"timeout": timeout} if timeout else {}
    return make_workflow(
        {
            "start": "manual.trigger",
            "ask": ("data.set", {"values": {"amount": "{{ input.amount }}"}}),
            "approval": ("wait.webhook", params),
            "decide": ("logic.if", {"condition": "{{ input.approved }}"}),
            "pay": ("data.set", {"values": {"paid": "{{ trigger.data.amount }}"}}),
            "refuse": ("data.set", {"values": {"refused": True}}),
            "expired": ("data.set", {"values": {"expired": "{{ input.amount }}"}}),
        },
        [
            "start -> ask",
            "ask -> approval",
            "approval -> decide",
            "decide.true -> pay",
            "decide.false -> refuse",
            "approval.timeout -> expired",
        ],
        id="approval",
    )


def stored_rows(path: Path) -> dict[str, Any]:
    """What is on disk, read with plain sqlite3."""
    import sqlite3

    with sqlite3.connect(path) as db:
        return {
            "executions": db.execute(
                "SELECT id, status, owner FROM executions ORDER BY id"
            ).fetchall(),
            "runs": db.execute(
                "SELECT execution_id, execution_index, status FROM node_executions "
                "WHERE status != 'state' ORDER BY 1, 2"
            ).fetchall(),
            "suspensions": db.execute(
                "SELECT execution_id, node_key, token FROM suspensions ORDER BY 1"
            ).fetchall(),
        }


async def test_a_waiting_execution_survives_a_restart_and_resumes_by_token(tmp_path: Path) -> None:
    db = tmp_path / "prana.db"
    async with open_engine(path=db) as engine:
        waiting = await engine.run(approval_workflow(), {"amount": 5000})
        assert engine.live_count == 0  # a waiting execution leaves memory
    assert waiting.status == "suspended"
    assert waiting.order == ["start", "ask", "approval"]
    (suspension,) = waiting.suspensions
    assert (suspension.node_key, suspension.kind) == ("approval", "webhook")
    assert suspension.token is not None
    assert suspension.token.startswith("wh_")  # never "-...", which reads as an option
    assert len(suspension.token) >= 32

    async with open_engine(path=db) as engine:
        listed = await engine.list_executions(status="suspended")
        assert [execution.id for execution in listed] == [waiting.id]
        assert listed[0].suspensions[0].token == suspension.token
        done = await engine.resume_token(suspension.token, {"approved": True})
    assert done.status == "completed"
    assert done.order == ["start", "ask", "approval", "decide", "pay"]
    assert done.output == {"paid": 5000}
    assert done.runs_of("approval")[0].output == {"approved": True}
    assert done.suspensions == ()

    async with open_engine(path=db) as engine:
        again = await engine.get(waiting.id)
    assert again.status == "completed"
    assert again.order == done.order
    assert [run.output for run in again.node_runs] == [run.output for run in done.node_runs]
    assert stored_rows(db)["suspensions"] == []


async def test_event_numbers_and_progress_go_on_where_they_stopped_after_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "prana.db"
    async with open_engine(path=db) as engine:
        handle = await engine.start(approval_workflow(), {"amount": 5})
        before = [event async for event in handle.events()]
    assert isinstance(before[-1], prana.events.ExecutionSuspended)
    assert [event.sequence for event in before] == list(range(1, len(before) + 1))

    async with open_engine(path=db) as engine:
        subscription = engine.events()
        done = await engine.resume(handle.id, {"approved": True})
        async with open_engine(path=db) as rerunning:
            rerun_events = rerunning.events()
            rerun = await rerunning.rerun(handle.id, from_node="decide")
    after = [event async for event in subscription]
    assert done.status == rerun.status == "completed"
    # Numbered on from the last event before the restart, with no gap.
    assert [event.sequence for event in after] == list(
        range(len(before) + 1, len(before) + 1 + len(after))
    )
    assert isinstance(after[-1], prana.events.ExecutionCompleted)
    # start and ask had finished: the share of settled nodes goes on from 2 of 7.
    progress = [event.progress for event in after if hasattr(event, "progress")]
    assert progress == [3 / 7, 4 / 7, 5 / 7, 6 / 7, 1.0]
    # A rerun is a new execution: its events start at 1.
    first, *_ = [event async for event in rerun_events]
    assert isinstance(first, prana.events.ExecutionStarted)
    assert (first.execution_id, first.sequence) == (rerun.id, 1)


async def test_the_audit_trail_on_disk_is_json_that_sqlite_can_query(tmp_path: Path) -> None:
    db = tmp_path / "prana.db"
    failing = make_workflow(
        {
            "start": "manual.trigger",
            "ask": ("data.set", {"values": {"amount": "{{ input.amount }}"}}),
            "stop": ("core.fail", {"message": "no stock", "code": "out_of_stock"}),
        },
        ["start -> ask", "ask -> stop"],
        id="shop",
    )
    async with open_engine(path=db) as engine:
        failed = await engine.run(failing, {"amount": 7})
    assert failed.status == "failed"
    import sqlite3

    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT node_key, json_extract(output, '$.amount'), json_extract(error, '$.code'), "
            "json_extract(inputs, '$[0][0]') FROM node_executions WHERE execution_id = ? AND status != 'state' "
            "ORDER BY execution_index",
            (failed.id,),
        ).fetchall()
        trigger, variables = connection.execute(
            "SELECT json_extract(input, '$.amount'), json_valid(vars) FROM executions"
        ).fetchone()
    # An error or inputs (where a run's input came from) that is absent is NULL.
    assert rows == [
        ("start", 7, None, None),
        ("ask", 7, None, "main"),
        ("stop", None, "out_of_stock", "main"),
    ]
    with sqlite3.connect(db) as connection:
        assert connection.execute(
            "SELECT count(*) FROM node_executions WHERE error = '' OR inputs = ''"
        ).fetchone() == (0,)
    assert (trigger, variables) == (7, 1)


async def test_the_store_answers_while_the_app_keeps_the_loop_busy(tmp_path: Path) -> None:
    # An app task that computes and yields without ever letting the loop idle: a store
    # that read or wrote on a worker thread would wait up to 5 ms for Python's lock
    # after every row while the loop stays busy (decisions 0028-0030).
    db = tmp_path / "prana.db"
    async with open_engine(path=db) as engine:
        waiting = [await engine.run(approval_workflow(), {"amount": n}) for n in range(3)]
    tokens = [execution.suspensions[0].token for execution in waiting]
    assert all(token is not None for token in tokens)

    busy = anyio.Event()
    stop = anyio.Event()
    spins = 0

    async def keep_busy() -> None:
        nonlocal spins
        busy.set()
        while not stop.is_set():
            sum(range(20_000))  # about a millisecond of Python
            spins += 1
            await anyio.lowlevel.checkpoint()

    async with open_engine(path=db) as engine, anyio.create_task_group() as app:
        app.start_soon(keep_busy)
        await busy.wait()
        # A bound on starving, not on speed: it takes well under a second here, and
        # took about a minute with reads on a thread.
        with anyio.fail_after(20):
            listed = await engine.list_executions(status="suspended")
            first = await engine.resume_token(str(tokens[0]), {"approved": True})
            second = await engine.resume(waiting[1].id, {"approved": False})
            third = await engine.get(waiting[2].id)
        stop.set()
    assert spins > 0
    assert sorted(execution.id for execution in listed) == sorted(e.id for e in waiting)
    assert (first.status, first.output) == ("completed", {"paid": 0})
    assert (second.status, second.output) == ("completed", {"refused": True})
    assert (third.status, third.order) == ("suspended", ["start", "ask", "approval"])


async def test_resume_by_id_and_node(tmp_path: Path) -> None:
    async with open_engine(path=tmp_path / "p.db") as engine:
        waiting = await engine.run(approval_workflow(), {"amount": 7})
        done = await engine.resume(waiting.id, {"approved": False}, node="approval")
    assert done.output == {"refused": True}


async def test_resume_mistakes_are_clear_and_change_nothing(tmp_path: Path) -> None:
    db = tmp_path / "prana.db"
    async with open_engine(path=db) as engine:
        waiting = await engine.run(approval_workflow(), {"amount": 1})
        token = waiting.suspensions[0].token
        assert token is not None
        finished = await engine.run(make_workflow({"start": "manual.trigger"}, []))
        before = stored_rows(db)

        with pytest.raises(prana.ExecutionNotFound, match="no execution has id 'nope'"):
            await engine.resume("nope", {})
        with pytest.raises(
            prana.ExecutionNotFound, match=r"resume token not found \(it expired or was used\)"
        ):
            await engine.resume_token("not-a-token", {})
        with pytest.raises(prana.InvalidTransition, match="is completed; only a waiting"):
            await engine.resume(finished.id, {})
        with pytest.raises(
            prana.InvalidTransition, match=r"node 'ask' is not waiting .*\(waiting: approval\)"
        ):
            await engine.resume(waiting.id, {}, node="ask")
        with pytest.raises(prana.InvalidData, match=r"the resume data\.when: .* is not JSON data"):
            await engine.resume(waiting.id, {"when": object()})
        assert stored_rows(db) == before

        await engine.resume_token(token, {"approved": True})
        with pytest.raises(prana.ExecutionNotFound, match="expired or was used"):
            await engine.resume_token(token, {"approved": True})


async def test_a_three_day_wait_is_over_when_the_clock_jumps() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "wait": ("wait.interval", {"duration": "3d"}),
            "after": "core.noop",
        },
        ["start -> wait", "wait -> after"],
    )
    clock = VirtualClock(start=1_000_000.0)
    started = time.monotonic()
    async with open_engine(clock=clock) as engine:
        waiting = await engine.run(workflow, {"order": 1})
        assert waiting.status == "suspended"
        assert waiting.suspensions[0].wake_at == 1_000_000.0 + 3 * DAY
        assert clock.jump() == 1_000_000.0 + 3 * DAY
        done = await engine.wait(waiting.id)
    assert time.monotonic() - started < 5
    assert done.status == "completed"
    assert done.order == ["start", "wait", "after"]
    assert done.output == {"order": 1}
    wait_run = done.runs_of("wait")[0]
    assert wait_run.duration_ms == pytest.approx(3 * DAY * 1000)


@pytest.mark.parametrize("restart", [True, False], ids=["after a restart", "in one engine"])
async def test_many_timers_fire_at_their_time_though_few_are_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restart: bool
) -> None:
    # An engine holds only the earliest few stored timers (here 4) and loads the next
    # ones from the store as those fire; timers set meanwhile, earlier or later than
    # those held, and executions' deadlines fire too, each once, at its time. In one
    # engine, the timers set past twice that many leave memory for the store.
    monkeypatch.setattr("prana.actors._timers.HELD", 4)
    db = tmp_path / "prana.db"
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "wait": ("wait.interval", {"duration": "{{ input }}m"}),
            "after": "core.noop",
        },
        ["start -> wait", "wait -> after"],
    )
    timing_out = make_workflow(
        {"start": "manual.trigger", "hold": "wait.webhook"},
        ["start -> hold"],
        settings={"timeout": "95m"},
    )
    minutes = [50, 10, 30, 30, 30, 70, 20, 90, 30, 60, 40, 80, 30, 100, 5]
    clock = VirtualClock(start=MOMENT)
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(open_engine(path=db, clock=clock))
        waiting = {(await engine.run(workflow, minute)).id: minute for minute in minutes}
        timed = (await engine.run(timing_out)).id
        if restart:
            await stack.aclose()
            clock = VirtualClock(start=MOMENT)
            engine = await stack.enter_async_context(open_engine(path=db, clock=clock))
        for minute in (1, 35, 200):  # set while the engine runs
            waiting[(await engine.run(workflow, minute)).id] = minute
        ended: dict[str, prana.Execution] = {}
        for minute in sorted({*waiting.values(), 95}):
            # Time moves to each deadline in turn and stays there until what is due
            # has run (a timer never loaded would keep its execution waiting).
            clock.set(MOMENT + minute * 60)
            with anyio.fail_after(10):
                for execution_id in [e for e, due in waiting.items() if due == minute]:
                    ended[execution_id] = await engine.wait(execution_id)
                if minute == 95:
                    deadline = await engine.wait(timed)
    assert {
        execution_id: (execution.status, execution.finished_at)
        for execution_id, execution in ended.items()
    } == {
        execution_id: ("completed", MOMENT + minute * 60)
        for execution_id, minute in waiting.items()
    }
    assert all(
        [run.node_key for run in e.node_runs] == ["start", "wait", "after"] for e in ended.values()
    )
    assert (deadline.status, deadline.finished_at) == ("timed_out", MOMENT + 95 * 60)


async def test_a_deadline_that_passed_while_no_engine_ran_fires_at_start(tmp_path: Path) -> None:
    db = tmp_path / "prana.db"
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "wait": ("wait.interval", {"duration": "2h"}),
            "after": "core.noop",
        },
        ["start -> wait", "wait -> after"],
    )
    async with open_engine(path=db, clock=VirtualClock(start=0.0)) as engine:
        waiting = await engine.run(workflow, "x")
    async with open_engine(path=db, clock=VirtualClock(start=5 * 3600.0)) as engine:
        done = await engine.wait(waiting.id)
    assert done.order == ["start", "wait", "after"]


async def test_a_webhook_that_times_out_takes_its_timeout_port() -> None:
    clock = VirtualClock(start=0.0)
    async with open_engine(clock=clock) as engine:
        waiting = await engine.run(approval_workflow(timeout="1h"), {"amount": 3})
        token = waiting.suspensions[0].token
        clock.advance(3600)
        done = await engine.wait(waiting.id)
        assert done.order == ["start", "ask", "approval", "expired"]
        assert done.output == {"expired": 3}
        assert done.runs_of("approval")[0].port == "timeout"
        assert token is not None
        with pytest.raises(prana.ExecutionNotFound, match="expired or was used"):
            await engine.resume_token(token, {"approved": True})


async def test_resuming_before_the_deadline_wins_over_the_timer() -> None:
    clock = VirtualClock(start=0.0)
    async with open_engine(clock=clock) as engine:
        waiting = await engine.run(approval_workflow(timeout="1h"), {"amount": 3})
        done = await engine.resume(waiting.id, {"approved": True})
        clock.advance(7200)  # the old timer fires and finds nothing waiting
        again = await engine.wait(waiting.id)
    assert done.output == {"paid": 3}
    assert again.order == done.order


async def test_other_branches_run_while_one_waits() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "wait": "wait.webhook",
            "fast1": "core.noop",
            "fast2": ("data.set", {"values": {"fast": True}}),
            "join": ("data.merge", {"strategy": "merge"}),
        },
        ["start -> wait", "start -> fast1", "fast1 -> fast2", "wait -> join", "fast2 -> join"],
    )
    async with open_engine() as engine:
        waiting = await engine.run(workflow, {})
        assert waiting.status == "suspended"
        assert waiting.order == ["start", "wait", "fast1", "fast2"]
        done = await engine.resume(waiting.id, {"slow": True})
    assert done.order == ["start", "wait", "fast1", "fast2", "join"]
    assert done.output == {"slow": True, "fast": True}


async def test_several_waiting_nodes_need_a_name() -> None:
    workflow = make_workflow(
        {"start": "manual.trigger", "a": "wait.webhook", "b": "wait.webhook", "join": "data.merge"},
        ["start -> a", "start -> b", "a -> join", "b -> join"],
    )
    async with open_engine() as engine:
        waiting = await engine.run(workflow, {})
        assert [s.node_key for s in waiting.suspensions] == ["a", "b"]
        with pytest.raises(prana.InvalidTransition, match=r"several nodes are waiting .*\(a, b\)"):
            await engine.resume(waiting.id, 1)
        half = await engine.resume(waiting.id, "from b", node="b")
        assert half.status == "suspended"
        done = await engine.resume(waiting.id, "from a")
    assert done.output == ["from a", "from b"]


def block_rows(db: Path, execution_id: str) -> int:
    """How many blocks of a large routing state the store keeps for an execution."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM node_executions WHERE execution_id = ? AND execution_index > ?",
            (execution_id, STATE_ROW),
        ).fetchone()
    return int(count)


@pytest.mark.parametrize("steps", [0, 70], ids=["small", "75 nodes, routing state in blocks"])
async def test_a_wait_inside_a_loop_keeps_the_loop_going_after_a_restart(
    tmp_path: Path, steps: int
) -> None:
    # With 75 nodes the routing state is saved in blocks, each step saving the blocks
    # it changed: after each restart the loop carries on from them.
    db = tmp_path / "prana.db"
    body = [f"step{index}" for index in range(steps)]
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "each": ("core.for_each", {"items": "{{ input.items }}"}),
            "confirm": "wait.webhook",
            **dict.fromkeys(body, "core.noop"),
            "note": ("data.set", {"values": {"item": "{{ loop.item }}", "answer": "{{ input }}"}}),
            "after": "core.noop",
        },
        [
            "start -> each",
            "each.loop -> confirm",
            *(f"{a} -> {b}" for a, b in itertools.pairwise(["confirm", *body, "note"])),
            "note -> each",
            "each.done -> after",
        ],
    )
    async with open_engine(path=db) as engine:
        execution = await engine.run(workflow, {"items": ["a", "b", "c"]})
    for answer in ("yes", "no", "maybe"):
        assert block_rows(db, execution.id) == (2 if steps else 0)  # blocks of 64
        async with open_engine(path=db) as engine:
            token = execution.suspensions[0].token
            assert token is not None
            execution = await engine.resume_token(token, answer)
            # The whole trail (what resume returns holds the newest runs).
            execution = await engine.get(execution.id)
    assert execution.status == "completed"
    assert execution.output == [
        {"item": "a", "answer": "yes"},
        {"item": "b", "answer": "no"},
        {"item": "c", "answer": "maybe"},
    ]
    assert [run.run_index for run in execution.runs_of("confirm")] == [0, 1, 2]
    assert execution.order == [
        "start",
        *(["each", "confirm", *body, "note"] * 3),
        "each",
        "after",
    ]
    assert block_rows(db, execution.id) == 0  # completed: nothing will run again


async def test_for_each_saves_its_items_once_and_its_cursor_at_every_iteration() -> None:
    # A node context is saved field by field, only the fields that changed: the
    # items core.for_each keeps in its context are written once, not per iteration.
    # (The body logs, which is not pure: each iteration is saved before it.)
    saved: list[Checkpoint] = []

    class Recording(MemoryStore):
        async def commit(self, checkpoints: Any, **options: Any) -> set[str]:
            saved.extend(checkpoints)
            return await super().commit(checkpoints, **options)

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "each": ("core.for_each", {"items": "{{ input }}"}),
            "note": ("core.log", {"message": "{{ loop.item }}"}),
            "double": ("data.set", {"values": {"twice": "{{ loop.item * 2 }}"}}),
            "after": "core.noop",
        },
        [
            "start -> each",
            "each.loop -> note",
            "note -> double",
            "double -> each",
            "each.done -> after",
        ],
    )
    items = list(range(20))
    async with prana.Engine(store=Recording(), durability="normal", env={}) as engine:
        done = await engine.run(workflow, items)
    assert done.output == [{"twice": 2 * item} for item in items]
    fields = [checkpoint.node_contexts.get("each", {}) for checkpoint in saved]
    assert [written["items"] for written in fields if "items" in written] == [items]
    assert [written["index"] for written in fields if "index" in written] == [*items, 20]
    assert [written["item"] for written in fields if "item" in written] == [*items, None]


async def test_an_execution_continues_on_the_version_it_started_with(tmp_path: Path) -> None:
    db = tmp_path / "prana.db"
    version_1 = make_workflow(
        {
            "start": "manual.trigger",
            "wait": "wait.webhook",
            "end": ("data.set", {"values": {"version": 1}}),
        },
        ["start -> wait", "wait -> end"],
        id="flow",
        version=1,
    )
    version_2 = make_workflow(
        {
            "start": "manual.trigger",
            "wait": "wait.webhook",
            "end": ("data.set", {"values": {"version": 2}}),
        },
        ["start -> wait", "wait -> end"],
        id="flow",
        version=2,
    )
    async with open_engine(path=db) as engine:
        old = await engine.run(version_1, {})
        new = await engine.run(version_2, {})
    async with open_engine(path=db) as engine:
        assert (await engine.resume(old.id, {})).output == {"version": 1}
        assert (await engine.resume(new.id, {})).output == {"version": 2}


async def test_two_engines_on_one_file_do_not_share_a_live_execution(tmp_path: Path) -> None:
    db = tmp_path / "prana.db"
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "wait": "wait.webhook",
            "late": "wait.webhook",
            "end": "core.noop",
        },
        ["start -> wait", "wait -> late", "late -> end"],
    )
    async with open_engine(path=db) as first, open_engine(path=db) as second:
        waiting = await first.run(workflow, {})
        resumed = await second.resume(waiting.id, 1)  # taken from the store by the second
        assert resumed.status == "suspended"
        assert resumed.order == ["start", "wait", "late"]
        assert (await first.get(waiting.id)).status == "suspended"
        done = await first.resume(waiting.id, 2)
    assert done.status == "completed"
    assert stored_rows(db)["executions"] == [(waiting.id, "completed", None)]


async def test_a_store_file_that_is_not_prana_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(prana.StoreError, match="is not a SQLite database"):
        async with prana.Engine(store=f"sqlite:///{bad}"):
            pass
    assert bad.read_text().startswith("these are my notes")


async def test_engine_rejects_an_unknown_store_url() -> None:
    with pytest.raises(prana.StoreError, match="unknown store 'mongodb://x'"):
        async with prana.Engine(store="mongodb://x"):
            pass


async def test_sqlite_store_is_the_durable_default_for_urls(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    async with prana.Engine(store=store) as engine:
        result = await engine.run(
            make_workflow({"start": "manual.trigger", "a": "core.noop"}, ["start -> a"]), 1
        )
    assert result.status == "completed"
    assert stored_rows(tmp_path / "x.db")["runs"] == [
        (result.id, 0, "completed"),
        (result.id, 1, "completed"),
    ]


@pytest.mark.parametrize(
    ("off_the_loop", "limit"), [(False, BATCH_LIMIT), (True, BATCH_LIMIT_OFF_THE_LOOP)]
)
async def test_many_checkpoints_at_once_are_committed_in_bounded_batches(
    tmp_path: Path, off_the_loop: bool, limit: int
) -> None:
    # When more checkpoints wait than one transaction takes, the rest go in the next
    # ones, oldest first, and every supervisor hears about its own. A store that
    # commits off the loop (PostgreSQL) takes larger transactions.
    committed: list[list[str]] = []

    class Recording(SQLiteStore):
        commits_off_the_loop = off_the_loop

        async def commit(self, checkpoints: Any, **options: Any) -> set[str]:
            committed.append([checkpoint.execution_id for checkpoint in checkpoints])
            return {"e7"}

    store = Recording(tmp_path / "unused.db")
    writer = CheckpointWriter(store, Leases(store, owner="me", term=30.0), time.time)
    ids = [f"e{n}" for n in range(2 * limit + 5)]
    checkpoints = [
        Checkpoint(
            execution_id=execution_id,
            kind="step",
            workflow_id="w",
            workflow_version=1,
            workflow_hash="h",
            trigger="start",
            status="running",
        )
        for execution_id in ids
    ]
    applied: dict[str, bool] = {}
    handed_in: list[str] = []  # in the order the savers got to it

    async def save(checkpoint: Checkpoint) -> None:
        handed_in.append(checkpoint.execution_id)
        applied[checkpoint.execution_id] = await writer.save(checkpoint)

    async with anyio.create_task_group() as group:
        await group.start(writer.run)
        with contextlib.ExitStack() as savers_in_flight:
            for _ in checkpoints:  # as many executions as checkpoints save at once
                savers_in_flight.enter_context(writer.saving())
            async with anyio.create_task_group() as savers:
                for checkpoint in checkpoints:
                    savers.start_soon(save, checkpoint)
        group.cancel_scope.cancel()
    assert [len(ids) for ids in committed] == [limit, limit, 5]
    assert [execution_id for batch in committed for execution_id in batch] == handed_in
    assert sorted(handed_in) == sorted(ids)
    assert applied == {execution_id: execution_id != "e7" for execution_id in ids}
