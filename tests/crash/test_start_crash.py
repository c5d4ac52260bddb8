"""SIGKILL the moment ``engine.start`` returned: the execution was saved, and the next
engine runs it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest

import prana
from tests.crash.start_then_crash import actions

pytestmark = pytest.mark.crash


@pytest.mark.single_backend("asyncio")
async def test_an_execution_is_saved_before_start_returns(tmp_path: Path) -> None:
    db = tmp_path / "prana.db"
    done = await anyio.run_process(
        [sys.executable, "-m", "tests.crash.start_then_crash", str(db)], check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    execution_id = done.stdout.decode().strip()

    shipped: list[object] = []
    async with prana.Engine(store=db, actions=actions(shipped)) as engine:
        execution = await engine.get(execution_id)
        if execution.status == "running":  # taken over at start-up: wait for it
            execution = await engine.wait(execution_id)
    assert execution.status == "completed"
    assert execution.order == ["start", "ship"]
    assert execution.output == {"shipped": 7}
    assert shipped == [{"order": 7}]
