"""SIGKILL after a parent's cancellation is saved and before its sync child is
cancelled: the next engine cancels the child."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest

import prana

pytestmark = pytest.mark.crash


@pytest.mark.single_backend("asyncio")
async def test_a_child_left_running_by_a_crash_after_its_parent_was_cancelled_is_cancelled(
    tmp_path: Path,
) -> None:
    db = tmp_path / "prana.db"
    done = await anyio.run_process(
        [sys.executable, "-m", "tests.crash.cancel_parent", str(db)], check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    parent_id, child_id = done.stdout.decode().split()

    async with prana.Engine(store=db, recover=False) as engine:  # before reconciling
        assert (await engine.get(parent_id)).status == "cancelled"
        assert (await engine.get(child_id)).status == "suspended"
    async with prana.Engine(store=db) as engine:
        child = await engine.get(child_id)
        parent = await engine.get(parent_id)
    assert child.status == "cancelled"
    assert child.error is not None
    assert child.error.message == f"its parent execution {parent_id} is cancelled"
    assert parent.error is not None
    assert parent.error.message == "the order was withdrawn"
