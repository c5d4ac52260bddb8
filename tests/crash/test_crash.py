"""Crash tests: real processes, killed with SIGKILL, then carried on by new ones.

They check DESIGN §8's guarantees: a completed node is never run again after a crash,
a node that was running is run again with the same idempotency key, and nothing
acknowledged is lost; every execution ends as an uninterrupted run would.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from prana.testing import kill_at
from tests import postgres
from tests.crash.workload import keyed_by

pytestmark = pytest.mark.crash

ROOT = Path(__file__).resolve().parents[2]
JOBS = 40


def start_workload(db: Path | str, log: Path, lease: float = 30.0) -> subprocess.Popen[str]:
    """The workload on the SQLite file ``db``, or the store at the URL ``db``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash.workload", str(db), str(log), str(JOBS)],
        cwd=ROOT,
        env={**os.environ, "PRANA_LEASE": str(lease)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_workload(db: Path | str, log: Path) -> None:
    process = start_workload(db, log)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert out.strip().endswith("DONE")


def results(db: Path | str) -> dict[int, dict[str, Any]]:
    """Each job's outcome, with its audit trail apart from timings and ids."""

    async def read() -> dict[int, dict[str, Any]]:
        found = {}
        store = db if isinstance(db, str) else f"sqlite:///{db}"
        async with prana.Engine(store=store, recover=False) as engine:
            for summary in await engine.list_executions(limit=10_000):
                execution = await engine.get(summary.id)
                found[execution.input["job"]] = {
                    "id": execution.id,
                    "workflow": execution.workflow_id,
                    "status": execution.status,
                    "output": execution.output,
                    "trail": [
                        (
                            run.node_key,
                            run.run_index,
                            run.execution_index,
                            run.status,
                            run.port,
                            run.output,
                            run.inputs,
                        )
                        for run in execution.node_runs
                    ],
                }
        return found

    return anyio.run(read)


def test_killed_again_and_again_every_execution_ends_as_if_it_never_was(tmp_path: Path) -> None:
    reference_db, reference_log = tmp_path / "reference.db", tmp_path / "reference.log"
    started = time.monotonic()
    finish_workload(reference_db, reference_log)
    uninterrupted = time.monotonic() - started
    reference = results(reference_db)
    assert len(reference) == JOBS
    assert all(job["status"] == "completed" for job in reference.values())

    db, log = tmp_path / "crashing.db", tmp_path / "crashing.log"
    chance = random.Random(int(os.environ.get("PRANA_CRASH_SEED", "7")))
    kills = 0
    for _ in range(12):
        process = start_workload(db, log)
        # A real process, killed at a random moment while it works (the first part of
        # the window is the interpreter starting up).
        time.sleep(chance.uniform(0.35, 0.8) * uninterrupted)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate(timeout=60)
        if kills >= 6:
            break
    finish_workload(db, log)
    assert kills >= 3
    assert_as_if_never_crashed(reference, results(db), log)


def assert_as_if_never_crashed(
    reference: dict[int, dict[str, Any]], crashed: dict[int, dict[str, Any]], log: Path
) -> None:
    """Every job ended as in ``reference``; no node whose result was acknowledged
    (``log``) started again, and every acknowledged result is kept."""
    assert crashed.keys() == reference.keys()
    for job, outcome in reference.items():
        survived = crashed[job]
        assert survived["status"] == "completed", (job, survived)
        assert survived["output"] == outcome["output"], job
        assert survived["trail"] == outcome["trail"], job

    # No acknowledged node ran again, and every acknowledged result is on disk.
    ids = {outcome["id"] for outcome in crashed.values()}
    completed = {
        f"{outcome['id']}:{node}:{run_index}"
        for outcome in crashed.values()
        for node, run_index, _, status, *_ in outcome["trail"]
        if status == "completed"
    }
    acked_at: dict[str, int] = {}
    starts_after_ack = []
    for number, line in enumerate(log.read_text().splitlines()):
        kind, key = line.split()
        if kind == "acked":
            acked_at.setdefault(key, number)
        elif key in acked_at:
            starts_after_ack.append(key)
    assert starts_after_ack == []
    assert set(acked_at) <= completed
    assert {key.split(":")[0] for key in acked_at} <= ids
    assert_one_at_a_time_per_key(crashed, log)


def assert_one_at_a_time_per_key(crashed: dict[int, dict[str, Any]], log: Path) -> None:
    """The side effects of the executions queued by one concurrency key never
    interleave: each starts once the one before it has ended, across processes."""
    key_of = {
        outcome["id"]: keyed_by(job)
        for job, outcome in crashed.items()
        if outcome["workflow"] == "keyed"
    }
    assert len(key_of) >= 4
    order: dict[int, list[str]] = {}
    for line in log.read_text().splitlines():
        kind, key = line.split()
        execution_id = key.split(":")[0]
        if kind == "start" and execution_id in key_of:
            runs = order.setdefault(key_of[execution_id], [])
            if not runs or runs[-1] != execution_id:
                runs.append(execution_id)
    for runs in order.values():
        assert len(runs) == len(set(runs)), runs  # none came back after another began


def test_three_processes_on_one_postgres_killed_and_frozen_end_as_if_never(
    tmp_path: Path,
) -> None:
    reference_db, crashing_db = postgres.database(), postgres.database()
    reference_log, log = tmp_path / "reference.log", tmp_path / "crashing.log"
    finish_workload(reference_db, reference_log)
    reference = results(reference_db)
    assert all(job["status"] == "completed" for job in reference.values())

    chance = random.Random(int(os.environ.get("PRANA_CRASH_SEED", "11")))
    lease = 1.0  # a frozen process's executions are taken over a second on
    running = [start_workload(crashing_db, log, lease) for _ in range(3)]
    kills = 0
    try:
        for _ in range(6):  # SIGKILL one at random, and start another in its place
            time.sleep(chance.uniform(0.3, 0.8))
            victim = chance.choice(running)
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)
                kills += 1
            victim.communicate(timeout=60)
            running.remove(victim)
            running.append(start_workload(crashing_db, log, lease))
        # Freeze one past its lease; the others take its executions over.
        frozen = chance.choice(running)
        frozen.send_signal(signal.SIGSTOP)
        time.sleep(3 * lease)
        frozen.send_signal(signal.SIGCONT)
        for process in running:
            out, err = process.communicate(timeout=120)
            if process.returncode == 0:
                assert out.strip().endswith("DONE")
            else:  # a process that woke to find it had lost its executions may say so
                assert "is now run by another engine" in err, err
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
    assert kills >= 3
    finish_workload(crashing_db, log)  # whatever is left (nothing, if all went well)
    assert_as_if_never_crashed(reference, results(crashing_db), log)


CHAIN = {
    "id": "kill",
    "nodes": [
        {"key": "start", "type": "manual.trigger"},
        {"key": "a", "type": "data.set", "params": {"values": {"a": 1}}},
        # Not pure: what came before it is saved before it runs, and its result
        # before what comes after it (decision 0069).
        {"key": "b", "type": "core.log", "params": {"message": "b"}},
        {"key": "c", "type": "data.set", "params": {"values": {"c": "{{ input.a + 2 }}"}}},
    ],
    "connections": [
        {"from": "start", "to": "a"},
        {"from": "a", "to": "b"},
        {"from": "b", "to": "c"},
    ],
}


async def carry_on(db: Path, execution_id: str) -> prana.Execution:
    async with prana.Engine(store=f"sqlite:///{db}") as engine:
        return await engine.wait(execution_id)


@pytest.mark.single_backend("asyncio")
@pytest.mark.parametrize("when", ["started", "completed"])
async def test_killed_at_a_node_boundary_it_carries_on_from_there(
    tmp_path: Path, when: str
) -> None:
    db = tmp_path / "prana.db"
    report = await anyio.to_thread.run_sync(
        lambda: kill_at(CHAIN, db=db, node="b", when=when)  # type: ignore[arg-type]
    )
    assert report.killed, report.stderr
    assert report.execution_id is not None
    async with prana.Engine(store=f"sqlite:///{db}", recover=False) as engine:
        before = await engine.get(report.execution_id)
    assert before.status == "running"
    if when == "started":
        assert [(r.node_key, r.status) for r in before.node_runs] == [
            ("start", "completed"),
            ("a", "completed"),
            ("b", "running"),
        ]
    else:
        # b's result was saved together with c's dispatch: c is in flight.
        assert [(r.node_key, r.status) for r in before.node_runs] == [
            ("start", "completed"),
            ("a", "completed"),
            ("b", "completed"),
            ("c", "running"),
        ]
    done = await carry_on(db, report.execution_id)
    assert done.status == "completed"
    assert done.output == {"c": 3}
    assert [(r.node_key, r.run_index, r.execution_index) for r in done.node_runs] == [
        ("start", 0, 0),
        ("a", 0, 1),
        ("b", 0, 2),
        ("c", 0, 3),
    ]
