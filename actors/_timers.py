"""The timer actor: wakes waiting nodes when their deadline passes (DESIGN §7).

It keeps a heap of deadlines, sleeps on the engine's clock until the earliest, and
hands each due timer to the engine, which wakes the node: in memory if its execution
is live here, otherwise by taking the execution from the store. Deadlines are
wall-clock times kept with the executions, so at start-up the heap is filled from
the store and a deadline that passed while no process ran fires at once. Timers are
never removed when a node is resumed early: waking a node that no longer waits does
nothing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup, TaskStatus

from prana._records import Suspension

from ._clock import Clock

logger = logging.getLogger("prana.engine")

Fire = Callable[[Suspension], Awaitable[None]]


class TimerActor:
    """A heap of wake-up times on one clock."""

    def __init__(self, clock: Clock, fire: Fire) -> None:
        self._clock = clock
        self._fire = fire
        self._heap: list[tuple[float, int, Suspension]] = []
        self._known: set[tuple[str, int]] = set()
        self._counter = itertools.count()
        self._waiting: anyio.CancelScope | None = None
        self._deadline: float | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, suspension: Suspension) -> None:
        """Arm a timer for a waiting node with a deadline (again: no effect)."""
        if suspension.wake_at is None:
            return
        key = (suspension.execution_id, suspension.execution_index)
        if key in self._known:
            return
        self._known.add(key)
        heapq.heappush(self._heap, (suspension.wake_at, next(self._counter), suspension))
        if self._waiting is not None and (
            self._deadline is None or suspension.wake_at < self._deadline
        ):
            self._waiting.cancel()  # wake up and sleep again until the new earliest

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire timers as their deadlines pass, until cancelled."""
        async with anyio.create_task_group() as firing:
            task_status.started()
            while True:
                self._deadline = self._heap[0][0] if self._heap else None
                with anyio.CancelScope() as self._waiting:
                    if self._deadline is None:
                        await anyio.sleep_forever()
                    else:
                        await self._clock.sleep_until(self._deadline)
                self._waiting = None
                self._fire_due(firing)

    def _fire_due(self, firing: TaskGroup) -> None:
        now = self._clock.now()
        while self._heap and self._heap[0][0] <= now:
            _, _, suspension = heapq.heappop(self._heap)
            self._known.discard((suspension.execution_id, suspension.execution_index))
            firing.start_soon(self._fire_one, suspension)

    async def _fire_one(self, suspension: Suspension) -> None:
        try:
            await self._fire(suspension)
        except Exception:
            logger.exception(
                "could not wake node %r of execution %s",
                suspension.node_key,
                suspension.execution_id,
            )
