"""Worker tasks as the event loop's own tasks (decision 0063).

Every run of an async action gets a task (DESIGN §7), so what a task costs to start
and to finish is part of every such node. A task of an anyio task group carries a
handle with a cancel scope and an event of its own, task-state bookkeeping and a done
callback: on the benchmark machine about 14 µs on asyncio and 17 µs on trio, against
8 µs and 10 µs for a task of the loop's own (asyncio) or of a plain nursery (trio) run
in one cancel scope. On asyncio the keeper's bookkeeping is done by the worker's own
coroutine as it ends, not by a done callback (one more callback per task).

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
        self._new_scope: Callable[[], anyio.CancelScope] = anyio.CancelScope

    def start(self, work: Work) -> anyio.CancelScope:
        """Run ``work`` in a task of its own now; cancel it through the scope given."""
        scope = self._new_scope()
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

        running: set[anyio.CancelScope] = set()  # each worker's, until it ends
        failures: list[BaseException] = []
        changed = anyio.Event()  # a worker failed, or (stopping) the last one ended
        stopping = False

        async def run(work: Work, scope: anyio.CancelScope) -> None:
            # _in_scope, and what a done callback would do, without one more callback
            # and one more coroutine per task.
            try:
                if scope.cancel_called:
                    work.close()
                    return
                with scope:
                    await work
            except asyncio.CancelledError:
                raise  # the loop's own (it is closing), not a failure
            except BaseException as exc:
                failures.append(exc)
                changed.set()
            finally:
                running.discard(scope)
                if stopping and not running:
                    changed.set()

        def spawn(work: Work, scope: anyio.CancelScope) -> None:
            running.add(scope)  # which holds the task once it runs in the scope
            loop.create_task(run(work, scope), name=NAME)

        self._spawn = spawn
        # anyio.CancelScope() looks up the backend's class each time: once is enough.
        self._new_scope = type(anyio.CancelScope())
        task_status.started()
        try:
            await changed.wait()
            raise failures[0]
        finally:
            self._spawn = None
            stopping = True
            with anyio.CancelScope(shield=True):
                while running:
                    changed = anyio.Event()
                    for scope in list(running):
                        scope.cancel()
                    await changed.wait()

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
