"""The timer actor: wakes waiting nodes when their deadline passes, and fires
schedule triggers (DESIGN §7).

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
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus

from prana._errors import ExecutionNotFound
from prana._records import Suspension
from prana.storage import Store

from ._clock import Clock
from ._live import LiveExecutions, Unrestorable
from ._schedules import Schedules, ScheduleSlot
from ._services import BackgroundServices
from ._supervision import WakeRequest


class Timer(Protocol):
    """What the timer actor keeps: a deadline, and a key that tells it from others."""

    @property
    def wake_at(self) -> float | None: ...

    @property
    def timer_key(self) -> tuple[str, int]: ...


Fire = Callable[[Any], Awaitable[None]]


class TimerActor:
    """A heap of wake-up times on one clock. ``fire(timer)`` is called for each timer
    that comes due, in a task of its own, under the failure policy of background
    services (``services``: a failure is tried again after a backoff)."""

    def __init__(self, clock: Clock, fire: Fire, services: BackgroundServices) -> None:
        self._clock = clock
        self._fire = fire
        self._services = services
        self._heap: list[tuple[float, int, Timer]] = []
        self._known: set[tuple[str, int]] = set()
        self._counter = itertools.count()
        self._waiting: anyio.CancelScope | None = None
        self._deadline: float | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, timer: Timer) -> None:
        """Arm a timer: a waiting node with a deadline (a :class:`Suspension`) or a
        schedule's next time. Arming it again has no effect."""
        wake_at = timer.wake_at
        if wake_at is None:
            return
        key = timer.timer_key
        if key in self._known:
            return
        self._known.add(key)
        heapq.heappush(self._heap, (wake_at, next(self._counter), timer))
        if self._waiting is not None and (self._deadline is None or wake_at < self._deadline):
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
            _, _, timer = heapq.heappop(self._heap)
            self._known.discard(timer.timer_key)
            firing.start_soon(self._services.retrying, "timers", partial(self._fire, timer))


async def fire_timer(
    live: LiveExecutions, schedules: Schedules | None, timer: Suspension | ScheduleSlot
) -> None:
    """A deadline passed: wake the node, here or by taking its execution from the
    store (an execution that cannot be carried on here fails, with an error that
    says why); or a schedule's time came. Raises :class:`StoreError` (tried again)."""
    if isinstance(timer, ScheduleSlot):
        if schedules is not None:
            await schedules.fire(timer)
        return
    try:
        await live.deliver(timer.execution_id, WakeRequest(execution_index=timer.execution_index))
    except ExecutionNotFound:
        return
    except Unrestorable as exc:
        await live.end_unrestorable(exc)


async def arm_due_timers(store: Store, timers: TimerActor, clock: Clock, horizon: float) -> None:
    """Arm the timers kept in the store that come due within ``horizon`` seconds (or
    are overdue), wherever they were set: a wait another engine set is fired here
    too if that engine has stopped. Where several engines fire one timer, the first
    to take the execution wakes it; the others find it taken and do nothing."""
    for suspension in await store.timers(before=clock.now() + horizon):
        timers.add(suspension)
