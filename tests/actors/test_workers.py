"""Worker tasks (actors/_workers.py): started beside a keeper, cancelled by their
scope, waited for when the keeper stops."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from prana.actors._workers import WorkerTasks


async def test_a_worker_cancelled_before_it_began_does_not_run() -> None:
    ran: list[str] = []

    async def work(name: str) -> None:
        ran.append(name)

    async with anyio.create_task_group() as group:
        workers = WorkerTasks(group)
        await group.start(workers.keep)
        workers.start(work("kept"))
        workers.start(work("cancelled")).cancel()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        group.cancel_scope.cancel()
    assert ran == ["kept"]


async def test_a_stopping_keeper_cancels_its_workers_and_waits_for_them() -> None:
    ended: list[str] = []

    async def work() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()
                ended.append("tidied")

    async with anyio.create_task_group() as group:
        workers = WorkerTasks(group)
        await group.start(workers.keep)
        for _ in range(3):
            workers.start(work())
        await anyio.lowlevel.checkpoint()
        group.cancel_scope.cancel()
    assert ended == ["tidied"] * 3


class Interrupted(BaseException):
    pass


async def test_a_worker_that_fails_ends_the_keeper_with_its_error() -> None:
    async def work() -> None:
        await anyio.lowlevel.checkpoint()
        raise Interrupted

    with pytest.RaisesGroup(Interrupted, flatten_subgroups=True), anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            workers = WorkerTasks(group)
            await group.start(workers.keep)
            workers.start(work())
            await anyio.sleep_forever()  # until the keeper fails, or it times out
