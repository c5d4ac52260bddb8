"""Engines on one store know of each other: each beats a row of its own, one of them
leads (it sweeps for children whose parents ended), and when it leaves another
leads."""

from __future__ import annotations

from pathlib import Path

import anyio

import prana
from prana.testing import open_engine


async def until(condition: object) -> None:
    """Wait (at most 10 s) for ``condition()``, which a heartbeat makes true."""
    with anyio.fail_after(10):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def beats(*engines: prana.Engine) -> None:
    """Wait until each of ``engines`` has beaten twice more."""
    for engine in engines:
        for _ in range(2):
            before = engine.health().service("heartbeat").last_success_at or 0.0
            await until(
                lambda e=engine, b=before: (
                    (e.health().service("heartbeat").last_success_at or 0) > b
                )
            )


async def test_one_engine_leads_and_another_takes_over_when_it_leaves(tmp_path: Path) -> None:
    path, clock = tmp_path / "prana.db", prana.actors.SystemClock()
    first: list[prana.Engine] = []
    opened, leave = anyio.Event(), anyio.Event()

    async def run_first() -> None:
        async with open_engine(path=path, clock=clock, heartbeat=0.05) as engine:
            first.append(engine)
            opened.set()
            await leave.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(run_first)
        await opened.wait()
        (leader,) = first
        assert leader.leader  # alone on the store
        assert leader.health().leader
        async with (
            open_engine(path=path, clock=clock, heartbeat=0.05) as second,
            open_engine(path=path, clock=clock, heartbeat=0.05) as third,
        ):
            await beats(leader, second, third)
            assert (leader.leader, second.leader, third.leader) == (True, False, False)
            leave.set()  # the leader leaves
            await until(lambda: second.leader or third.leader)
            await beats(second, third)
            assert [second.leader, third.leader].count(True) == 1
