"""Worker tasks as the event loop's own tasks (decision 0063).

Every run of an async action gets a task (DESIGN §7), so what a task costs to start
and to finish is part of every such node. A task of an anyio task group carries a
handle with a cancel scope and an event of its own, task-state bookkeeping and a done
callback: on the benchmark machine about 14 µs on asyncio and 17 µs on trio, against
8 µs and 10 µs for a task of the loop's own (asyncio) or of a plain nursery (trio) run
in one cancel scope.

So the engine's task group runs one keeper, :meth:`WorkerTasks.keep`, and workers are
started as the backend's own tasks beside it:

- on asyncio with ``loop.create_task``; when the keeper is cancelled (the engine
  stops) it cancels the workers left and waits for them to end;
- on trio in the keeper's own nursery, which does the same by itself.

Each worker runs in an anyio cancel scope of its own, and that scope is what cancels
it: an action's shielded scopes hold against it as against any cancellation, on
either backend. A worker cancelled before it began does not call its action. A
worker that fails (the worker body catches every ``Exception``, so this is a bug or
an interrupt) ends the keeper with its error, and so the engine, as a failed task of
the engine's group would.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

if TYPE_CHECKING:
    import asyncio

Work = Coroutine[Any, Any, None]
NAME = "prana node worker"


async def _in_scope(work: Work, scope: anyio.CancelScope) -> None:
    if scope.cancel_called:  # cancelled before it began: the action is not called
        work.close()
        return
    with scope:
        await work


class WorkerTasks:
    """Where supervisors start their workers; :meth:`start` gives the scope that
    cancels one."""

    def __init__(self, task_group: TaskGroup) -> None:
        # Once the keeper has ended (the engine is stopping, a supervisor still winding
        # down), the engine's task group, which waits for what it starts.
        self._task_group = task_group
        self._spawn: Callable[[Work, anyio.CancelScope], None] | None = None

    def start(self, work: Work) -> anyio.CancelScope:
        """Run ``work`` in a task of its own now; cancel it through the scope given."""
        scope = anyio.CancelScope()
        if self._spawn is None:
            self._task_group.start_soon(_in_scope, work, scope, name=NAME)
        else:
            self._spawn(work, scope)
        return scope

    async def keep(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the workers until cancelled, then cancel those left and wait for them;
        raise what a worker failed with."""
        import asyncio  # here: an app on trio never needs it

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            await self._keep_in_nursery(task_status)
        else:
            await self._keep_on_loop(loop, task_status)

    async def _keep_on_loop(
        self, loop: asyncio.AbstractEventLoop, task_status: TaskStatus[None]
    ) -> None:
        import asyncio

        workers: dict[asyncio.Task[None], anyio.CancelScope] = {}
        failures: list[BaseException] = []
        failed = anyio.Event()

        def ended(task: asyncio.Task[None]) -> None:
            del workers[task]
            if not task.cancelled() and (error := task.exception()) is not None:
                failures.append(error)
                failed.set()

        def spawn(work: Work, scope: anyio.CancelScope) -> None:
            task = loop.create_task(_in_scope(work, scope), name=NAME)
            workers[task] = scope
            task.add_done_callback(ended)

        self._spawn = spawn
        task_status.started()
        try:
            await failed.wait()
            raise failures[0]
        finally:
            self._spawn = None
            with anyio.CancelScope(shield=True):
                while workers:
                    for scope in workers.values():
                        scope.cancel()
                    await asyncio.wait(list(workers))

    async def _keep_in_nursery(self, task_status: TaskStatus[None]) -> None:
        import trio

        async with trio.open_nursery() as nursery:

            def spawn(work: Work, scope: anyio.CancelScope) -> None:
                nursery.start_soon(_in_scope, work, scope, name=NAME)

            self._spawn = spawn
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._spawn = None
