"""Every store keeps what checkpoints say, under the same ownership rules."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest

import prana
from prana._records import Checkpoint, QueuePlace
from prana.storage import (
    MemoryStore,
    PostgresStore,
    ScheduleState,
    SQLiteStore,
    Store,
    StoredWorkflow,
)
from prana.storage._schema import LATEST, MIGRATIONS
from tests import postgres

ME, OTHER = "host:1:me", "host:2:other"


@asynccontextmanager
async def opened(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    store: Store
    if kind == "memory":
        store = MemoryStore()
    elif kind == "postgres":
        store = PostgresStore(postgres.database())
    else:
        store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


def run(index: int, key: str, status: str = "completed", **fields: Any) -> prana.NodeRun:
    return prana.NodeRun(node_key=key, run_index=0, execution_index=index, status=status, **fields)  # type: ignore[arg-type]


def checkpoint(execution_id: str = "e1", **fields: Any) -> Checkpoint:
    """A checkpoint of ``kind`` (by default a step if it leaves a running execution
    running, else a change)."""
    unchanged = fields.get("status", "running") == "running" and not fields.get(
        "status_changed", True
    )
    base: dict[str, Any] = {
        "execution_id": execution_id,
        "kind": "step" if unchanged and fields.get("vars") is None else "change",
        "workflow_id": "w",
        "workflow_version": 1,
        "workflow_hash": "h1",
        "trigger": "start",
        "status": "running",
        "started_at": 1.0,
        "active_paths": {"format": 1, "skipped": ["c"]},
    }
    base.update(fields)
    return Checkpoint(**base)


def waiting(
    execution_id: str, index: int, token: str | None, wake_at: float | None
) -> prana.Suspension:
    return prana.Suspension(
        execution_id=execution_id,
        node_key=f"wait{index}",
        run_index=0,
        execution_index=index,
        kind="webhook",
        token=token,
        wake_at=wake_at,
        wake_port="timeout",
        wake_data={"x": [1, None]},
        resume_port="main",
        started_at=2.0,
        data={"prompt": "Approve?", "fields": ["by"]} if index % 2 else None,
        params={"timeout": "1h"} if index % 2 else None,
    )


STORES = pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])


async def save_workflow(store: Store) -> None:
    await store.save_workflow(
        StoredWorkflow(
            hash="h1", id="w", version=1, definition={"id": "w", "nodes": []}, created_at=0.0
        )
    )


@STORES
async def test_checkpoints_build_up_an_execution(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        error = prana.ErrorInfo(
            code="x", message="m", details={"a": [1]}, node_key="b", run_index=0
        )
        assert await store.execution_status("e1") is None
        assert await store.execution_revision("e1") is None
        lost = await store.commit(
            [
                checkpoint(
                    kind="start",
                    input={"amount": 5},
                    vars={"v": 1},
                    runs=(
                        run(0, "start", output={"amount": 5}),
                        run(1, "a", output=[1, "two"], inputs=(("main", 0),)),
                    ),
                    node_contexts={"each": {"index": 0}},
                )
            ],
            owner=ME,
            lease_expires=100.0,
            now=1.0,
        )
        assert lost == set()
        assert await store.execution_status("e1") == "running"
        started = await store.execution_revision("e1")
        assert started is not None
        assert started[0] == "running"
        await store.commit(
            [
                checkpoint(
                    status="suspended",
                    runs=(
                        run(2, "b", "failed", error=error, port="error", output=error.to_dict()),
                    ),
                    node_contexts={"each": {"index": 1}},
                    suspensions_added=(waiting("e1", 3, "tok", 50.0),),
                    iteration_count=2,
                )
            ],
            owner=ME,
            lease_expires=100.0,
            now=2.0,
        )
        stored = await store.load_execution("e1")
        assert stored is not None
        assert (stored.status, stored.owner, stored.lease_expires) == ("suspended", None, None)
        assert await store.execution_status("e1") == "suspended"
        # A change of the row is a new revision: a waiter knows it from the row alone.
        assert await store.execution_revision("e1") == ("suspended", stored.revision)
        assert stored.revision > started[1]
        assert stored.input == {"amount": 5}
        assert stored.vars == {"v": 1}
        assert stored.node_contexts == {"each": {"index": 1}}
        assert stored.iteration_count == 2
        assert stored.workflow_hash == "h1"
        assert [(r.node_key, r.status, r.output) for r in stored.runs] == [
            ("start", "completed", {"amount": 5}),
            ("a", "completed", [1, "two"]),
            ("b", "failed", error.to_dict()),
        ]
        assert stored.runs[1].inputs == (("main", 0),)
        assert stored.runs[2].error == error
        assert stored.suspensions == (waiting("e1", 3, "tok", 50.0),)
        assert await store.find_token("tok") == waiting("e1", 3, "tok", 50.0)
        assert await store.find_token("nope") is None
        execution = stored.to_execution()
        assert execution.order == ["start", "a", "b", "wait3"]
        assert execution.skipped == ("c",)
        assert await store.load_execution("nope") is None
        workflow = await store.load_workflow("h1")
        assert workflow is not None
        assert workflow.definition == {"id": "w", "nodes": []}


@STORES
async def test_only_the_owner_applies_checkpoints(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        await store.commit([checkpoint(kind="start")], owner=ME, lease_expires=100.0, now=1.0)
        lost = await store.commit(
            [checkpoint(status="completed")], owner=OTHER, lease_expires=100.0, now=2.0
        )
        assert lost == {"e1"}
        stored = await store.load_execution("e1")
        assert stored is not None
        assert (stored.status, stored.owner) == ("running", ME)


@STORES
@pytest.mark.parametrize("size", [3, 12])  # SQLite: on the loop's thread, and on its own
async def test_a_batch_of_steps_applies_only_the_owned_ones(
    kind: str, size: int, tmp_path: Path
) -> None:
    # Plain steps of running executions are applied together; one owned by another
    # engine is refused alone, and none of its node runs is written. Steps leave
    # the leases alone (the heartbeat renews them) and so the revisions.
    mine = [f"mine{n}" for n in range(size - 1)]
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        await store.commit(
            [checkpoint(execution_id, kind="start") for execution_id in mine],
            owner=ME,
            lease_expires=100.0,
            now=1.0,
        )
        await store.commit(
            [checkpoint("theirs", kind="start")], owner=OTHER, lease_expires=100.0, now=1.0
        )
        error = prana.ErrorInfo(code="x", message="m", details={"a": [1]})
        steps = [
            checkpoint(
                execution_id,
                runs=(
                    run(0, "a", output={"n": n}, started_at=1.25, finished_at=1.5),
                    run(1, "b", "failed", error=error, inputs=(("main", 0),), output=None),
                )[: 1 + n % 2],
                status_changed=False,
                iteration_count=n + 2,
                active_paths={"format": 2, "nodes": str(n), "next": n},
            )
            for n, execution_id in enumerate(["theirs", *mine])
        ]
        lost = await store.commit(steps, owner=ME, lease_expires=150.0, now=2.0)
        assert lost == {"theirs"}
        for step in steps:
            stored = await store.load_execution(step.execution_id)
            assert stored is not None
            assert stored.lease_expires == 100.0
            assert stored.revision == 1
            if step.execution_id == "theirs":
                assert (stored.owner, stored.iteration_count, stored.runs) == (OTHER, 0, ())
                continue
            assert stored.owner == ME
            assert stored.runs == step.runs
            assert stored.active_paths == step.active_paths
            assert stored.iteration_count == step.iteration_count


@STORES
async def test_blocks_of_a_large_routing_state_are_replaced_one_by_one_and_dropped(
    kind: str, tmp_path: Path
) -> None:
    # A store keeps the last of each block beside the routing state, in every kind
    # of checkpoint; None drops one; another engine's blocks are refused.
    paths = {"format": 3, "blocks": 3, "next": 1}
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        first = {0: {"nodes": "3"}, 1: {"nodes": "0"}, 2: {"nodes": "0"}}
        start = checkpoint(kind="start", active_paths=paths, paths_blocks=first)
        await store.commit([start], owner=ME, lease_expires=100.0, now=1.0)
        step = {"status_changed": False, "active_paths": paths}
        one_run = checkpoint(runs=(run(0, "a"),), paths_blocks={1: {"nodes": "1"}}, **step)
        assert await store.commit([one_run], owner=ME, lease_expires=100.0, now=2.0) == set()
        theirs = checkpoint(paths_blocks={0: {"nodes": "9"}}, **step)
        assert await store.commit([theirs], owner=OTHER, lease_expires=100.0, now=3.0) == {"e1"}
        stored = await store.load_execution("e1")
        assert stored is not None
        assert stored.paths_blocks == {0: {"nodes": "3"}, 1: {"nodes": "1"}, 2: {"nodes": "0"}}
        assert [r.node_key for r in stored.runs] == ["a"]  # the blocks are not runs
        waits = checkpoint(
            status="suspended", active_paths=paths, paths_blocks={2: {"nodes": "5"}, 0: None}
        )
        await store.commit([waits], owner=ME, lease_expires=100.0, now=4.0)
        stored = await store.load_execution("e1")
        assert stored is not None
        assert (stored.status, stored.paths_blocks) == (
            "suspended",
            {1: {"nodes": "1"}, 2: {"nodes": "5"}},
        )
        (listed,) = await store.list_executions()
        assert listed.to_execution().execution_data["active_paths"] == paths  # as it is


@STORES
async def test_a_step_of_one_node_run_is_saved_only_by_the_owner(kind: str, tmp_path: Path) -> None:
    # The commonest checkpoint (SQLite saves it in one statement): another engine's
    # is refused and writes nothing; the owner's adds the run and moves the state.
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        await store.commit([checkpoint(kind="start")], owner=ME, lease_expires=100.0, now=1.0)
        paths = {"format": 2, "nodes": "31", "next": 1}
        step = {"status_changed": False, "iteration_count": 2, "active_paths": paths}
        theirs = checkpoint(runs=(run(0, "a", output="theirs"),), **step)
        assert await store.commit([theirs], owner=OTHER, lease_expires=200.0, now=2.0) == {"e1"}
        before = await store.load_execution("e1")
        assert before is not None
        assert (before.runs, before.iteration_count) == ((), 0)
        mine = checkpoint(runs=(run(0, "a", output="mine"),), **step)
        assert await store.commit([mine], owner=ME, lease_expires=200.0, now=3.0) == set()
        after = await store.load_execution("e1")
        assert after is not None
        assert [(r.node_key, r.output) for r in after.runs] == [("a", "mine")]
        assert (after.active_paths, after.iteration_count) == (paths, 2)
        assert (after.owner, after.lease_expires, after.revision) == (ME, 100.0, 1)


@STORES
async def test_a_waiting_execution_is_not_taken_with_a_state_others_moved_on_from(
    kind: str, tmp_path: Path
) -> None:
    # ME loads a waiting execution to resume it; meanwhile OTHER takes it, runs it and
    # it waits again. ME's take, made from what it loaded, is refused (lost) and
    # changes nothing; a take from what is there now goes through.
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        await store.commit([checkpoint(kind="start")], owner=ME, lease_expires=9.0, now=1.0)
        await store.commit([checkpoint(status="suspended")], owner=ME, lease_expires=9.0, now=2.0)
        loaded = await store.load_execution("e1")
        assert loaded is not None
        assert loaded.revision == 2

        def take(revision: int, **fields: Any) -> Checkpoint:
            return checkpoint(kind="take", revision=revision, **fields)

        assert await store.commit([take(2)], owner=OTHER, lease_expires=9.0, now=3.0) == set()
        await store.commit(
            [checkpoint(status="suspended", runs=(run(0, "theirs", output="moved on"),))],
            owner=OTHER,
            lease_expires=9.0,
            now=4.0,
        )
        stale = take(loaded.revision, runs=(run(0, "mine", output="stale"),))
        assert await store.commit([stale], owner=ME, lease_expires=9.0, now=5.0) == {"e1"}
        now_there = await store.load_execution("e1")
        assert now_there is not None
        assert (now_there.status, now_there.revision) == ("suspended", 4)
        assert [(r.node_key, r.output) for r in now_there.runs] == [("theirs", "moved on")]
        fresh = take(now_there.revision)
        assert await store.commit([fresh], owner=ME, lease_expires=9.0, now=6.0) == set()


@STORES
async def test_orphans_and_waiting_executions_are_taken_once(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        await store.commit(
            [
                checkpoint("live", kind="start"),
                checkpoint("expired", kind="start"),
                checkpoint("dead", kind="start"),
            ],
            owner=OTHER,
            lease_expires=100.0,
            now=1.0,
        )
        await store.renew(["expired"], owner=OTHER, lease_expires=5.0)
        await store.renew(["live"], owner=ME, lease_expires=5.0)  # not mine: no effect
        await store.commit(
            [checkpoint("waiting", kind="start", status="suspended")],
            owner=ME,
            lease_expires=100.0,
            now=1.0,
        )
        taken = await store.claim_orphans(
            owner=ME, lease_expires=200.0, now=10.0, dead_owners=["nobody"]
        )
        assert taken == ["expired"]
        taken = await store.claim_orphans(
            owner=ME, lease_expires=200.0, now=10.0, dead_owners=[OTHER]
        )
        assert taken == ["dead", "live"]
        # A waiting execution is taken with a checkpoint, once.
        take = checkpoint("waiting", kind="take", revision=1)
        assert await store.commit([take], owner=OTHER, lease_expires=200.0, now=10.0) == set()
        assert await store.commit([take], owner=ME, lease_expires=200.0, now=10.0) == {"waiting"}
        nope = checkpoint("nope", kind="take")
        assert await store.commit([nope], owner=ME, lease_expires=200.0, now=10.0) == {"nope"}
        stored = await store.load_execution("waiting")
        assert stored is not None
        assert (stored.status, stored.owner) == ("running", OTHER)


@STORES
async def test_lists_timers_and_suspensions(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        await store.commit(
            [
                checkpoint(
                    "a",
                    kind="start",
                    status="suspended",
                    started_at=1.0,
                    suspensions_added=(waiting("a", 1, "t1", 30.0),),
                ),
                checkpoint(
                    "b",
                    kind="start",
                    status="suspended",
                    started_at=2.0,
                    suspensions_added=(waiting("b", 1, None, 10.0), waiting("b", 2, "t2", None)),
                ),
                checkpoint("c", kind="start", status="completed", started_at=3.0, workflow_id="w"),
            ],
            owner=ME,
            lease_expires=100.0,
            now=1.0,
        )
        assert [(s.execution_id, s.wake_at) for s in await store.timers()] == [
            ("b", 10.0),
            ("a", 30.0),
        ]
        assert [s.execution_id for s in await store.timers(before=20.0)] == ["b"]
        listed = await store.list_executions()
        assert [e.id for e in listed] == ["c", "b", "a"]
        assert [len(e.suspensions) for e in listed] == [0, 2, 1]
        assert [e.id for e in await store.list_executions(status="suspended", limit=1)] == ["b"]
        assert await store.list_executions(workflow_id="other") == []
        await store.commit(
            [checkpoint("b", status="running", kind="take", revision=1, suspensions_removed=(1,))],
            owner=ME,
            lease_expires=100.0,
            now=5.0,
        )
        assert [s.execution_id for s in await store.timers()] == ["a"]


@STORES
async def test_timers_come_page_by_page_in_time_order(kind: str, tmp_path: Path) -> None:
    # An engine holds only the earliest timers and asks for the next ones after the
    # last it holds: pages in (time, execution, node) order, ties and executions'
    # deadlines included, with nothing left out or given twice.
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        times = {"e1": 30.0, "e2": 10.0, "e3": 30.0, "e4": 20.0, "e5": 30.0, "e6": 5.0}
        await store.commit(
            [
                checkpoint(
                    execution_id,
                    kind="start",
                    status="suspended",
                    suspensions_added=(
                        waiting(execution_id, 2, None, at),
                        waiting(execution_id, 1, None, at),
                    ),
                    deadline=at if execution_id in ("e3", "e4") else None,
                )
                for execution_id, at in times.items()
            ],
            owner=ME,
            lease_expires=100.0,
            now=1.0,
        )
        everything = [(s.wake_at, s.execution_id, s.execution_index) for s in await store.timers()]
        assert everything == sorted(
            [(at, e, index) for e, at in times.items() for index in (1, 2)]
            + [(30.0, "e3", -1), (20.0, "e4", -1)]
        )
        paged: list[tuple[float, str, int]] = []
        while True:
            page = await store.timers(after=paged[-1] if paged else None, limit=3)
            paged += [(s.wake_at or 0.0, s.execution_id, s.execution_index) for s in page]
            if len(page) < 3:
                break
        assert paged == everything
        assert len(await store.timers(before=20.0, after=(10.0, "e2", 1), limit=10)) == 4


async def test_long_outputs_are_kept_apart_and_come_back_whole(tmp_path: Path) -> None:
    # An output longer than a row of node_executions holds without an overflow page
    # of its own is kept in run_outputs; it loads back the same, in any kind of step.
    sizes = [1, 650, 690, 700, 710, 900, 5_000, 300_000]
    outputs = {size: {"text": "é" * (size // 2)} for size in sizes}
    async with opened("sqlite", tmp_path) as store:
        await save_workflow(store)
        await store.commit([checkpoint(kind="start")], owner=ME, lease_expires=100.0, now=1.0)
        for index, size in enumerate(sizes):  # one run per step: one statement
            step = checkpoint(
                runs=(run(index, f"n{size}", output=outputs[size]),), status_changed=False
            )
            assert await store.commit([step], owner=ME, lease_expires=100.0, now=2.0) == set()
        together = checkpoint(  # several at once, in the execution's last checkpoint
            status="completed",
            runs=tuple(
                run(len(sizes) + i, f"m{size}", output=outputs[size])
                for i, size in enumerate(sizes)
            ),
        )
        assert await store.commit([together], owner=ME, lease_expires=100.0, now=3.0) == set()
        stored = await store.load_execution("e1")
    assert stored is not None
    assert [(r.node_key, r.output) for r in stored.runs] == [
        (f"{prefix}{size}", outputs[size]) for prefix in "nm" for size in sizes
    ]
    with sqlite3.connect(tmp_path / "s.db") as db:
        kept_apart = db.execute("SELECT count(*) FROM run_outputs").fetchone()[0]
        in_rows = db.execute(
            "SELECT max(length(CAST(output AS BLOB))) FROM node_executions WHERE status != 'state'"
        ).fetchone()[0]
        # Kept apart as text, which SQLite's JSON functions read (not as a blob).
        apart = db.execute(
            "SELECT DISTINCT typeof(output), length(json_extract(output, '$.text')) "
            "FROM run_outputs ORDER BY 2"
        ).fetchall()
    db.close()
    long = [size for size in sizes if len(orjson.dumps(outputs[size])) > 700]
    assert apart == [("text", size // 2) for size in long]
    assert kept_apart == 2 * len(long)
    assert in_rows <= 700


async def test_a_commit_of_megabytes_and_small_ones_at_the_same_time_all_land(
    tmp_path: Path,
) -> None:
    # A commit of megabytes runs on the store's thread while the loop goes on; the
    # small commits made meanwhile wait for it, and every one is saved.
    big = {"blob": "x" * 3_000_000}
    ids = [f"e{n}" for n in range(20)]
    async with opened("sqlite", tmp_path) as store:
        await save_workflow(store)
        await store.commit(
            [checkpoint(execution_id, kind="start") for execution_id in ["big", *ids]],
            owner=ME,
            lease_expires=100.0,
            now=1.0,
        )

        async def step(execution_id: str, output: Any) -> None:
            step = checkpoint(
                execution_id, runs=(run(0, "n", output=output),), status_changed=False
            )
            assert await store.commit([step], owner=ME, lease_expires=100.0, now=2.0) == set()

        async with anyio.create_task_group() as group:
            group.start_soon(step, "big", big)
            for n, execution_id in enumerate(ids):
                group.start_soon(step, execution_id, n)
        loaded = {e: await store.load_execution(e) for e in ["big", *ids]}
    assert {e: [r.output for r in stored.runs] for e, stored in loaded.items() if stored} == {
        "big": [big],
        **{execution_id: [n] for n, execution_id in enumerate(ids)},
    }


async def test_sqlite_keeps_everything_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "keep.db"
    store = SQLiteStore(path)
    await store.open()
    await save_workflow(store)
    await store.commit(
        [checkpoint(kind="start", runs=(run(0, "start", output="x"),))],
        owner=ME,
        lease_expires=9.0,
        now=1.0,
    )
    await store.aclose()
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    again = SQLiteStore(path)
    await again.open()
    stored = await again.load_execution("e1")
    await again.aclose()
    assert stored is not None
    assert stored.runs[0].output == "x"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x7072616E


OLD_CONTEXT = {
    "items": [1, {"a": "x"}],
    "index": 3,
    "done": False,
    "ok": True,
    "item": None,
    "name": 'q"t é',
    "ratio": 1.5,
    "empty": {},
}


async def test_a_version_1_database_migrates_forward_keeping_its_executions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        db.executescript(MIGRATIONS[0])
        db.execute(f"PRAGMA application_id = {0x7072616E}")
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO workflows VALUES ('h1', 'w', 1, '{}', 0)")
        db.execute(
            "INSERT INTO executions (id, workflow_hash, workflow_id, workflow_version, trigger, "
            "status, vars, paths, iteration_count, updated_at) VALUES ('old', 'h1', 'w', 1, "
            """'start', 'suspended', '{}', '{"format": 2, "nodes": "31", "next": 2}', 7, 1.0)"""
        )
        db.execute(
            "INSERT INTO node_executions (execution_id, execution_index, node_key, run_index, "
            "attempt, status, port, output) VALUES ('old', 0, 'start', 0, 1, 'completed', "
            "'main', CAST('{\"n\": 1}' AS BLOB))"  # JSON was a blob before version 6
        )
        db.execute(
            "INSERT INTO suspensions (execution_id, execution_index, node_key, run_index, kind, "
            "token, wake_port, resume_port) VALUES ('old', 1, 'wait', 0, 'webhook', 'tok', "
            "'timeout', 'main')"
        )
        db.execute(
            "INSERT INTO node_contexts VALUES ('old', 'each', CAST(? AS BLOB))",
            (json.dumps(OLD_CONTEXT),),
        )
    db.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        stored = await store.load_execution("old")
        found = await store.find_token("tok")
        listed = await store.list_executions()
    finally:
        await store.aclose()
    assert stored is not None
    # The routing state and iteration count moved to the state row (version 5).
    assert stored.active_paths == {"format": 2, "nodes": "31", "next": 2}
    assert stored.iteration_count == 7
    # Node contexts are kept field by field (version 7), every kind of JSON value.
    assert stored.node_contexts == {"each": OLD_CONTEXT}
    assert [(run.node_key, run.output) for run in stored.runs] == [("start", {"n": 1})]
    assert [(e.id, e.active_paths, e.iteration_count) for e in listed] == [
        ("old", stored.active_paths, 7)
    ]
    assert (stored.status, stored.depth, stored.mode, stored.deadline, stored.revision) == (
        "suspended",
        0,
        None,
        None,
        0,
    )
    assert found is not None
    # A wait saved before version 8 has no data.
    assert (found.node_key, found.child_execution_id, found.data) == ("wait", None, None)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST == 11
        assert db.execute("SELECT count(*) FROM schedules").fetchone()[0] == 0
        # Since version 6 JSON is text, which SQLite's JSON functions read.
        assert db.execute(
            "SELECT typeof(output), json_extract(output, '$.n') FROM node_executions "
            "WHERE node_key = 'start'"
        ).fetchone() == ("text", 1)


async def test_sqlite_commit_waits_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path)
    await store.open()
    await save_workflow(store)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(
                functools.partial(store.commit, owner=ME, lease_expires=9.0, now=1.0),
                [checkpoint(kind="start")],
            )
            await anyio.wait_all_tasks_blocked()
            assert await store.load_execution("e1") is None  # not written, not lost
            other.execute("COMMIT")
        stored = await store.load_execution("e1")
        assert stored is not None
        assert stored.status == "running"
    finally:
        other.close()
        await store.aclose()


async def test_sqlite_gives_up_on_a_lock_held_past_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, busy_timeout=0.05)
    await store.open()
    await save_workflow(store)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(prana.StoreError, match="locked for longer than busy_timeout"):
            await store.commit([checkpoint(kind="start")], owner=ME, lease_expires=9.0, now=1.0)
        other.execute("ROLLBACK")
        await store.commit([checkpoint(kind="start")], owner=ME, lease_expires=9.0, now=1.0)
        assert (await store.load_execution("e1")) is not None
    finally:
        other.close()
        await store.aclose()


async def test_a_sqlite_read_sees_one_state_of_the_file(tmp_path: Path) -> None:
    # The queries of one read (an execution's row, then its runs, ...) see the file
    # as it was when the read began, even if another process commits in between.
    path = tmp_path / "snapshot.db"
    store = SQLiteStore(path)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await save_workflow(store)

        def count_twice(db: sqlite3.Connection) -> tuple[int, int]:
            before = db.execute("SELECT count(*) FROM workflows").fetchone()[0]
            other.execute(
                "INSERT INTO workflows (hash, id, version, definition, created_at) "
                "VALUES ('h2', 'w2', 1, x'7b7d', 0)"
            )
            return before, db.execute("SELECT count(*) FROM workflows").fetchone()[0]

        assert store._runner is not None
        assert await store._runner.read(count_twice) == (1, 1)
        assert await store.find_workflow("w2") is not None  # the next read sees it
    finally:
        other.close()
        await store.aclose()


async def test_a_sqlite_read_waits_for_a_lock_asleep_and_gives_up_clearly(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "read.db")
    await store.open()
    runner = store._runner
    assert runner is not None
    tries = 0

    def locked_twice(db: sqlite3.Connection) -> str:
        nonlocal tries
        tries += 1
        if tries <= 2:
            raise sqlite3.OperationalError("database is locked")
        return "read"

    def always_locked(db: sqlite3.Connection) -> str:
        raise sqlite3.OperationalError("database is locked")

    try:
        assert await runner.read(locked_twice) == "read"
        assert tries == 3
        runner.busy_timeout = 0.05
        with pytest.raises(prana.StoreError, match=r"cannot read .*locked for longer than busy"):
            await runner.read(always_locked)
    finally:
        await store.aclose()


async def test_sqlite_keeps_the_wal_bounded(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = SQLiteStore(path)
    await store.open()
    await save_workflow(store)
    await store.commit([checkpoint(kind="start")], owner=ME, lease_expires=9.0, now=1.0)
    big = {"format": 1, "skipped": [], "blob": "x" * 20_000}
    for index in range(1500):  # about 20 MB through the WAL
        await store.commit(
            [checkpoint(active_paths=big, runs=(run(index, f"n{index}", output=index),))],
            owner=ME,
            lease_expires=9.0,
            now=1.0,
        )
    assert Path(f"{path}-wal").stat().st_size < 8 * 1024 * 1024
    stored = await store.load_execution("e1")
    await store.aclose()
    assert stored is not None
    assert [run.output for run in stored.runs] == list(range(1500))


async def test_sqlite_maintained_beside_its_commits_keeps_the_wal_bounded(tmp_path: Path) -> None:
    # As an engine runs it: checkpoints on their own thread while commits go on, on
    # the loop as they do when alone; the WAL starts over, and nothing is lost.
    path = tmp_path / "wal.db"
    store = SQLiteStore(path)
    await store.open()
    big = {"format": 1, "skipped": [], "blob": "x" * 20_000}
    async with anyio.create_task_group() as group:
        group.start_soon(store.maintain)
        await save_workflow(store)
        await store.commit([checkpoint(kind="start")], owner=ME, lease_expires=9.0, now=1.0)
        for index in range(1500):  # about 20 MB through the WAL
            step = checkpoint(
                status_changed=False,
                active_paths=big,
                runs=(run(index, f"n{index}", output=index),),
            )
            await store.commit([step], owner=ME, lease_expires=9.0, now=1.0)  # on the spot
            await anyio.lowlevel.checkpoint()  # the checkpoints' thread reports back
        wal = Path(f"{path}-wal").stat().st_size
        group.cancel_scope.cancel()
    await store.aclose()
    assert wal < 8 * 1024 * 1024
    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        stored = await reopened.load_execution("e1")
    finally:
        await reopened.aclose()
    assert stored is not None
    assert [run.output for run in stored.runs] == list(range(1500))


class _CommitDuringCopy:
    """The checkpoints' connection, with a commit landing while it copies the WAL: a
    reader keeps the copy (``PASSIVE``) from the pages of a commit made after it
    began, as the copy would not take them."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db, self.path = db, path

    def execute(self, sql: str) -> sqlite3.Cursor:
        if "PASSIVE" not in sql:
            return self.db.execute(sql)
        with sqlite3.connect(self.path, isolation_level=None) as reader:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM executions").fetchone()
            with sqlite3.connect(self.path) as other:
                other.execute("PRAGMA wal_autocheckpoint = 0")  # no checkpoint of its own
                other.execute("UPDATE executions SET updated_at = updated_at + 1")
            cursor = self.db.execute(sql)
            reader.execute("COMMIT")
        return cursor


def _wal_frames(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


async def test_sqlite_checkpoint_beside_commits_lets_the_wal_start_over(tmp_path: Path) -> None:
    # Commits land while the checkpoints' thread copies the WAL; it still leaves the
    # WAL so that the next commit starts it over (it does not wait for a commit to
    # find time to checkpoint the rest, decision 0028).
    path = tmp_path / "wal.db"
    store = SQLiteStore(path)
    await store.open()
    runner = store._runner
    assert runner is not None
    runner._wal.maintained, runner._wal.every = True, 10_000  # as if maintain() ran
    try:
        await save_workflow(store)
        await store.commit([checkpoint(kind="start")], owner=ME, lease_expires=9.0, now=1.0)
        for index in range(200):
            step = checkpoint(status_changed=False, runs=(run(index, f"n{index}", output=index),))
            await store.commit([step], owner=ME, lease_expires=9.0, now=1.0)
        assert Path(f"{path}-wal").stat().st_size > 500_000
        assert runner._checkpointer is not None
        copying = _CommitDuringCopy(runner._checkpointer, path)
        counted = runner._wal._checkpoint_beside(copying, 202)  # type: ignore[arg-type]
        assert counted == 202
        last = checkpoint(status_changed=False, runs=(run(200, "last", output=200),))
        await store.commit([last], owner=ME, lease_expires=9.0, now=1.0)
        assert _wal_frames(path) <= 3  # the last commit's pages only
        stored = await store.load_execution("e1")
        assert stored is not None
        assert [run.output for run in stored.runs] == list(range(201))
    finally:
        await store.aclose()


async def open_fails(path: Path, match: str, **options: Any) -> None:
    store = SQLiteStore(path, **options)
    with pytest.raises(prana.StoreError, match=match):
        await store.open()


async def test_sqlite_refuses_files_it_cannot_use_safely(tmp_path: Path) -> None:
    text = tmp_path / "text.db"
    text.write_text("not a database at all")
    await open_fails(text, "is not a SQLite database")
    assert text.read_text() == "not a database at all"

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    db.close()
    await open_fails(foreign, r"is a SQLite database of another program \(tables: invoices\)")
    with sqlite3.connect(foreign) as db:  # left as it was: not switched to WAL
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()
    assert not Path(f"{foreign}-wal").exists()

    # Another program's file that has no tables yet is not prana's to take either.
    claimed = tmp_path / "claimed.db"
    with sqlite3.connect(claimed) as db:
        db.execute("PRAGMA application_id = 1234")
    db.close()
    await open_fails(claimed, r"another program \(its application id is 0x4d2\)")
    with sqlite3.connect(claimed) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()

    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA application_id = 1886544238")
        db.execute("PRAGMA user_version = 99")
        db.execute("CREATE TABLE workflows (hash TEXT)")
    await open_fails(newer, "schema version 99, newer than this prana knows")

    await open_fails(tmp_path, "is a directory")


async def test_sqlite_refuses_a_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    store = SQLiteStore(path)
    await store.open()
    await save_workflow(store)
    await store.commit(
        [
            checkpoint(
                kind="start", runs=tuple(run(i, f"n{i}", output="x" * 500) for i in range(50))
            )
        ],
        owner=ME,
        lease_expires=9.0,
        now=1.0,
    )
    await store.aclose()
    data = bytearray(path.read_bytes())
    size = len(data)
    data[size // 2 : size // 2 + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    await open_fails(path, "corrupt|not a usable SQLite database")


async def test_sqlite_refuses_a_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    store = SQLiteStore(path)
    await store.open()
    await store.aclose()
    path.chmod(0o444)
    immutable = False
    if os.geteuid() == 0:
        # root writes read-only files; an immutable file it cannot write either.
        immutable = (
            subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode
            == 0
        )
        if not immutable:
            pytest.skip("running as root on a filesystem without chattr +i")
    try:
        await open_fails(path, "read-only")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


async def test_sqlite_reports_a_full_disk_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    store = SQLiteStore(path, max_page_count=30)
    await store.open()
    await save_workflow(store)
    await store.commit(
        [checkpoint(kind="start", runs=(run(0, "start"),))], owner=ME, lease_expires=9.0, now=1.0
    )
    big = tuple(run(i, f"n{i}", output="x" * 4000) for i in range(1, 60))
    with pytest.raises(prana.StoreError, match="full; free space and start again"):
        await store.commit([checkpoint(runs=big)], owner=ME, lease_expires=9.0, now=2.0)
    stored = await store.load_execution("e1")
    assert stored is not None
    assert [r.node_key for r in stored.runs] == ["start"]  # all or nothing
    await store.aclose()
    await open_fails(tmp_path / "tiny.db", "full; free space and start again", max_page_count=3)


async def test_an_engine_refuses_to_start_on_a_full_store_and_a_full_store_stops_runs(
    tmp_path: Path,
) -> None:
    with pytest.raises(prana.StoreError, match="is full"):
        async with prana.Engine(store=f"sqlite:///{tmp_path / 'tiny.db'}?max_page_count=3"):
            pass
    actions = prana.ActionRegistry()

    @actions.action("test.big")
    def big(ctx: prana.NodeContext) -> str:
        return "x" * 200_000

    workflow = prana.load_workflow(
        {
            "id": "big",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "big", "type": "test.big"},
            ],
            "connections": [{"from": "start", "to": "big"}],
        },
        actions=actions,
    )
    path = tmp_path / "small.db"
    async with prana.Engine(actions=actions, store=f"sqlite:///{path}?max_page_count=40") as engine:
        handle = await engine.start(workflow)
        with pytest.raises(prana.StoreError, match="is full"):
            await handle.result()
        execution = await engine.get(handle.id)
    assert execution.status == "running"  # as last saved: it carries on once there is room
    assert execution.order == ["start", "big"]


async def test_store_urls() -> None:
    store = SQLiteStore.from_url("sqlite:////tmp/x/p.db?synchronous=full&busy_timeout=2")
    assert (str(store.path), store.synchronous, store.busy_timeout) == ("/tmp/x/p.db", "FULL", 2.0)
    assert str(SQLiteStore.from_url("sqlite:///rel/p.db").path) == "rel/p.db"
    for bad, message in [
        ("sqlite://p.db", "not a SQLite store URL"),
        ("sqlite:///p.db?colour=red", "unknown option 'colour'"),
        ("sqlite:///p.db?synchronous=sometimes", "synchronous must be"),
    ]:
        with pytest.raises(prana.StoreError, match=message):
            SQLiteStore.from_url(bad)


@STORES
async def test_schedules_are_claimed_once_and_their_pending_firing_kept(
    kind: str, tmp_path: Path
) -> None:
    async with opened(kind, tmp_path) as store:
        await _schedule_steps(store)


async def _schedule_steps(store: Store) -> None:
    nine = "0 9 * * * UTC"
    state = await store.arm_schedule("report", "daily", spec=nine, first_at=100.0)
    assert state == ScheduleState(next_at=100.0, pending_at=None, spec=nine)
    # Arming again with the same spec keeps where it stands.
    again = await store.arm_schedule("report", "daily", spec="0 9 * * * UTC", first_at=999.0)
    assert again.next_at == 100.0

    args = {"due_at": 100.0, "next_at": 200.0, "pending_at": 100.0}
    other_spec = {**args, "spec": "0 10 * * * UTC"}
    assert await store.advance_schedule("report", "daily", **other_spec) is False
    assert await store.advance_schedule("report", "daily", **args, spec=nine) is True
    assert await store.advance_schedule("report", "daily", **args) is False  # claimed already
    state = await store.arm_schedule("report", "daily", spec="0 9 * * * UTC", first_at=999.0)
    assert state == ScheduleState(next_at=200.0, pending_at=100.0, spec=nine)

    await store.schedule_started("report", "daily", 100.0)
    # Without replace, a schedule kept with another expression is left as it is.
    kept = await store.arm_schedule(
        "report", "daily", spec="0 10 * * * UTC", first_at=300.0, replace=False
    )
    assert kept == ScheduleState(next_at=200.0, pending_at=None, spec=nine)
    changed = await store.arm_schedule("report", "daily", spec="0 10 * * * UTC", first_at=300.0)
    assert changed == ScheduleState(next_at=300.0, pending_at=None, spec="0 10 * * * UTC")


@STORES
async def test_an_execution_is_started_once_whoever_saves_it_first(
    kind: str, tmp_path: Path
) -> None:
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        first = checkpoint("same", status="running", kind="start")
        assert await store.commit([first], owner=ME, lease_expires=1e12, now=1.0) == set()
        again = checkpoint("same", status="running", kind="start")
        other = checkpoint("other", status="running", kind="start")
        lost = await store.commit([again, other], owner=OTHER, lease_expires=1e12, now=2.0)
        assert lost == {"same"}  # refused alone; the rest of the batch is kept
        kept = await store.load_execution("same")
        assert kept is not None
        assert kept.owner == ME
        assert await store.load_execution("other") is not None


@STORES
async def test_executions_are_counted_by_status(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        assert await store.count_executions() == {}
        starts = [
            checkpoint(f"e{n}", kind="start", workflow_id=workflow, status=status)
            for n, (workflow, status) in enumerate(
                [("w", "running"), ("w", "completed"), ("w", "completed"), ("v", "failed")]
            )
        ]
        await store.commit(starts, owner=ME, lease_expires=100.0, now=1.0)
        assert await store.count_executions() == {"running": 1, "completed": 2, "failed": 1}
        assert await store.count_executions(workflow_id="w") == {"running": 1, "completed": 2}
        assert await store.count_executions(workflow_id="nothing") == {}


@STORES
async def test_schedules_are_listed_and_paused(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        await store.arm_schedule("w", "tick", spec="@hourly UTC", first_at=10.0)
        await store.arm_schedule("v", "tock", spec="@daily UTC", first_at=20.0)
        assert await store.pause_schedule("w", "tick", True)
        assert not await store.pause_schedule("w", "nothing", True)
        # A new spec (another version of the workflow) keeps the pause.
        again = await store.arm_schedule("w", "tick", spec="*/5 * * * * UTC", first_at=15.0)
        listed = await store.list_schedules()
        assert await store.pause_schedule("w", "tick", False)
        resumed = await store.list_schedules()
    assert again.paused
    assert [
        (row.workflow_id, row.trigger, row.state.paused, row.state.next_at) for row in listed
    ] == [
        ("v", "tock", False, 20.0),
        ("w", "tick", True, 15.0),
    ]
    assert [row.state.paused for row in resumed] == [False, False]


@STORES
async def test_executions_are_listed_a_page_at_a_time_between_two_moments(
    kind: str, tmp_path: Path
) -> None:
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        starts = [checkpoint(f"e{n}", kind="start", started_at=float(10 + n % 4)) for n in range(8)]
        await store.commit(starts, owner=ME, lease_expires=100.0, now=1.0)
        pages, older = [], None
        while True:
            page = await store.list_executions(limit=3, older_than=older)
            if not page:
                break
            pages.append([(e.started_at, e.id) for e in page])
            older = (page[-1].started_at or 0.0, page[-1].id)
        between = await store.list_executions(started_after=11.0, started_before=13.0)
    listed = [entry for page in pages for entry in page]
    assert [len(page) for page in pages] == [3, 3, 2]
    assert listed == sorted(listed, reverse=True)  # newest first, ties by id
    assert len(set(listed)) == 8
    assert sorted(e.id for e in between) == ["e1", "e2", "e5", "e6"]


@STORES
async def test_a_kept_workflow_is_the_one_kept_last_for_its_id(kind: str, tmp_path: Path) -> None:
    def definition(version: int) -> StoredWorkflow:
        return StoredWorkflow(
            hash=f"h{version}", id="w", version=version, definition={"v": version},
            created_at=float(version),
        )  # fmt: skip

    async with opened(kind, tmp_path) as store:
        assert await store.kept_workflows() == []
        await store.keep_workflow(definition(1))
        await store.keep_workflow(definition(2))
        kept = await store.kept_workflows()
        loaded = await store.load_workflow("h1")
    assert [(w.id, w.version, w.definition) for w in kept] == [("w", 2, {"v": 2})]
    assert loaded is not None  # the older definition stays, for its executions


@STORES
async def test_a_kept_workflow_is_forgotten_and_its_definition_stays(
    kind: str, tmp_path: Path
) -> None:
    kept = StoredWorkflow(hash="h1", id="w", version=1, definition={"v": 1}, created_at=1.0)
    async with opened(kind, tmp_path) as store:
        await store.keep_workflow(kept)
        assert await store.forget_kept_workflow("w")
        assert not await store.forget_kept_workflow("w")
        assert await store.kept_workflows() == []
        assert await store.load_workflow("h1") is not None


def queued(
    execution_id: str, key: str | None, at: float, priority: int = 0, limit: int = 1
) -> Checkpoint:
    return checkpoint(
        execution_id,
        kind="start",
        status="queued",
        started_at=at,
        queue=QueuePlace(key=key, limit=limit, priority=priority),
    )


@STORES
async def test_queued_executions_are_claimed_by_room_priority_and_age(
    kind: str, tmp_path: Path
) -> None:
    async with opened(kind, tmp_path) as store:
        await save_workflow(store)
        await store.commit(
            [
                queued("ann-old", "ann", 2.0),
                queued("ann-new", "ann", 3.0),
                queued("bob-low", "bob", 4.0, limit=2),
                queued("bob-high", "bob", 5.0, priority=5, limit=2),
                queued("bob-last", "bob", 6.0, limit=2),
                queued("free", None, 7.0),
            ],
            owner=OTHER,
            lease_expires=100.0,
            now=1.0,
        )
        await store.commit(
            [queued("ann-held", "ann", 1.5)], owner=OTHER, lease_expires=100.0, now=1.0
        )
        first = await store.claim_queued(owner=ME, lease_expires=50.0, now=10.0, limit=2)
        assert first == ["bob-high", "ann-held"]  # priority first, then age
        second = await store.claim_queued(owner=OTHER, lease_expires=100.0, now=10.0, limit=10)
        # 'ann' has one claimed already (its lease holds); 'bob' has room for one more.
        assert second == ["bob-low", "free"]
        assert await store.claim_queued(owner=OTHER, lease_expires=100.0, now=10.0, limit=10) == []
        stored = await store.load_execution("bob-high")
        assert stored is not None
        assert (stored.status, stored.owner, stored.queue) == (
            "queued",
            ME,
            QueuePlace(key="bob", limit=2, priority=5),
        )
        assert stored.to_execution().concurrency_key == "bob"
        # The claimer starts one: a take from 'queued', which only it may make.
        start = checkpoint("ann-held", kind="take", take_from="queued", revision=1)
        assert await store.commit([start], owner=OTHER, lease_expires=60.0, now=11.0) == {
            "ann-held"
        }
        assert await store.commit([start], owner=ME, lease_expires=60.0, now=11.0) == set()
        # A claim whose lease ran out (its engine died before starting it) is claimed
        # again; an ended execution makes room.
        assert await store.claim_queued(owner=OTHER, lease_expires=90.0, now=51.0, limit=10) == [
            "bob-high"
        ]
        done = checkpoint("ann-held", status="completed", finished_at=52.0)
        assert await store.commit([done], owner=ME, lease_expires=60.0, now=52.0) == set()
        # An engine that cannot run one passes it by; another claims it.
        late = functools.partial(
            store.claim_queued, owner=OTHER, lease_expires=90.0, now=53.0, limit=10
        )
        assert await late(skip={"ann-old", "ann-new"}) == []
        assert await late() == ["ann-old"]


@STORES
async def test_engines_beat_one_leads_and_a_silent_one_is_gone(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        first = await store.beat(ME, now=100.0, stale_after=30.0)
        other = await store.beat(OTHER, now=101.0, stale_after=30.0)
        assert (first.leader, first.alive, first.gone) == (True, (ME,), ())
        assert (other.leader, other.alive, other.gone) == (False, (ME, OTHER), ())
        assert (await store.beat(ME, now=120.0, stale_after=30.0)).leader  # renewed
        # ME stops beating: past its lease, OTHER leads and sees it gone.
        late = await store.beat(OTHER, now=151.0, stale_after=30.0)
        assert (late.leader, late.alive, late.gone) == (True, (OTHER,), (ME,))
        assert not (await store.beat(ME, now=152.0, stale_after=30.0)).leader  # back: follows
        # An engine that leaves gives its lead up at once; rows silent for long go.
        await store.leave(OTHER)
        back = await store.beat(ME, now=153.0, stale_after=30.0)
        assert (back.leader, back.alive) == (True, (ME,))
        assert (await store.beat(OTHER, now=600.0, stale_after=30.0)).gone == (ME,)
        assert (await store.beat(OTHER, now=700.0, stale_after=30.0)).gone == ()  # forgotten
