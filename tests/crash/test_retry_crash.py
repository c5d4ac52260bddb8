"""SIGKILL during a retry's backoff: the next engine makes the next attempt, once."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

import prana
from prana.testing import VirtualClock, kill_at
from tests.crash.retry_actions import actions


def workflow(log: Path, delay: str) -> prana.Workflow:
    return prana.load_workflow(
        {
            "id": "retry-crash",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {
                    "key": "call",
                    "type": "crash.flaky",
                    "params": {"log": str(log)},
                    "settings": {"retry": {"max_attempts": 3, "backoff": "fixed", "delay": delay}},
                },
            ],
            "connections": [{"from": "start", "to": "call"}],
        },
        actions=actions,
    )


@pytest.mark.single_backend("asyncio")
@pytest.mark.parametrize("delay", ["500ms", "1h"])
async def test_killed_while_waiting_to_retry_it_carries_on_with_the_next_attempt(
    tmp_path: Path, delay: str
) -> None:
    db, log = tmp_path / "prana.db", tmp_path / "attempts.log"
    report = await anyio.to_thread.run_sync(
        lambda: kill_at(
            workflow(log, delay),
            db=db,
            node="call",
            when="retrying",
            actions="tests.crash.retry_actions:actions",
        )
    )
    assert report.killed, report.stderr
    execution_id = report.execution_id
    assert execution_id is not None
    async with prana.Engine(actions=actions, store=db, recover=False) as engine:
        before = await engine.get(execution_id)
    assert [(r.node_key, r.status, r.attempt) for r in before.node_runs] == [
        ("start", "completed", 1),
        ("call", "retried", 1),
        ("call", "running" if delay == "500ms" else "suspended", 2),
    ]
    # Past the backoff in either case: a long one fires as the engine starts.
    clock = VirtualClock(start=time.time() + 3601)
    async with prana.Engine(actions=actions, store=db, clock=clock) as engine:
        done = await engine.wait(execution_id)
    assert done.status == "completed"
    assert done.output == {"attempt": 2}
    assert [(r.node_key, r.status, r.attempt) for r in done.node_runs] == [
        ("start", "completed", 1),
        ("call", "retried", 1),
        ("call", "completed", 2),
    ]
    key = f"{execution_id}:call:0"
    assert log.read_text().splitlines() == [f"{key} 1", f"{key} 2"]  # each attempt once
