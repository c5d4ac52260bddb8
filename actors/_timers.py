"""The timer actor: wakes waiting nodes when their deadline passes, and fires
schedule triggers (DESIGN §7).

It keeps a heap of deadlines, sleeps on the engine's clock until the earliest, and
hands each due timer to the engine, which wakes the node: in memory if its execution
is live here, otherwise by taking the execution from the store. Deadlines are
wall-clock times kept with the executions, in the store, which indexes them by time:
the actor holds only the earliest (about ``HELD``), and loads the next ones from the
store when it has fired those, so that 100 000 executions waiting a day cost an
engine neither memory nor a long start. A deadline that passed while no process ran
fires at once. Timers are never removed when a node is resumed early: waking a node
that no longer waits does nothing.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Awaitable, Callable, Sequence
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


# Where a stored timer sorts: its time, then its execution and node (as the store
# orders them).
Position = tuple[float, str, int]
Load = Callable[[Position | None, int], Awaitable[Sequence[Suspension]]]
HELD = 1000  # the stored timers held in memory: the earliest this many, give or take
_EVERY = (math.inf, "", 0)  # every stored timer is held (or has fired)


def _position(timer: Suspension) -> Position:
    return (timer.wake_at or 0.0, timer.execution_id, timer.execution_index)


class TimerActor:
    """A heap of wake-up times on one clock. ``fire(timer)`` is called for each timer
    that comes due, in a task of its own, under the failure policy of background
    services (``services``: a failure is tried again after a backoff).

    With ``load``, the waiting nodes' timers (:class:`Suspension`) are the store's:
    ``load(after, limit)`` gives the earliest ``limit`` of them past position
    ``after``, and the actor holds about ``held`` of them. Without, it holds every
    timer it is given. A schedule's times are always held."""

    def __init__(
        self,
        clock: Clock,
        fire: Fire,
        services: BackgroundServices,
        *,
        load: Load | None = None,
        held: int | None = None,
    ) -> None:
        self._clock = clock
        self._fire = fire
        self._services = services
        self._load = load
        self._held = held or HELD
        self._heap: list[tuple[float, int, Timer]] = []
        self._known: set[tuple[str, int]] = set()
        self._counter = itertools.count()
        self._waiting: anyio.CancelScope | None = None
        self._deadline: float | None = None
        # Every stored timer up to this position is held or has fired; the later ones
        # wait in the store (None: none loaded yet).
        self._loaded_to: Position | None = None if load is not None else _EVERY
        self._stored_held = 0
        self._arriving: list[Suspension] | None = None  # added while a load is under way

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, timer: Timer) -> None:
        """Arm a timer: a waiting node with a deadline (a :class:`Suspension`) or a
        schedule's next time. Arming it again has no effect; a stored timer later than
        those held stays in the store until it is among the earliest."""
        wake_at = timer.wake_at
        if wake_at is None:
            return
        key = timer.timer_key
        if key in self._known:
            return
        if isinstance(timer, Suspension):
            if self._loaded_to is None or _position(timer) > self._loaded_to:
                if self._arriving is not None:  # the load under way may not see it
                    self._arriving.append(timer)
                return
            self._stored_held += 1
        self._known.add(key)
        heapq.heappush(self._heap, (wake_at, next(self._counter), timer))
        if self._stored_held > 2 * self._held:
            self._keep_earliest()
        if self._waiting is not None and (self._deadline is None or wake_at < self._deadline):
            self._waiting.cancel()  # wake up and sleep again until the new earliest

    def _keep_earliest(self) -> None:
        """Hold only the earliest ``held`` stored timers: the others, added while
        every stored timer was held, are in the store and loaded again in turn."""
        entries = sorted(self._heap)
        stored = sorted(
            (entry for entry in entries if isinstance(entry[2], Suspension)),
            key=lambda entry: _position(entry[2]),  # type: ignore[arg-type]
        )
        dropped = stored[self._held :]
        for entry in dropped:
            self._known.discard(entry[2].timer_key)
        gone = {id(entry) for entry in dropped}
        self._heap = [entry for entry in entries if id(entry) not in gone]  # sorted: a heap
        self._stored_held = self._held
        last = stored[self._held - 1][2]
        assert isinstance(last, Suspension)
        self._loaded_to = _position(last)

    async def _load_next(self) -> None:
        """Hold the next stored timers, after those loaded so far."""
        assert self._load is not None
        arriving: list[Suspension] = []
        self._arriving = arriving
        try:
            timers = await self._load(self._loaded_to, self._held)
        finally:
            self._arriving = None
        self._loaded_to = _position(timers[-1]) if len(timers) >= self._held else _EVERY
        for timer in (*timers, *arriving):
            self.add(timer)

    def _must_load(self) -> bool:
        return self._loaded_to is None or (self._loaded_to != _EVERY and not self._stored_held)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire timers as their deadlines pass, until cancelled. The first stored
        timers are loaded before it reports it has started (a store that fails then
        fails the start)."""
        if self._must_load():
            await self._load_next()
        async with anyio.create_task_group() as firing:
            task_status.started()
            while True:
                if self._must_load():
                    await self._services.retrying("timers", self._load_next)
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
            if isinstance(timer, Suspension):
                self._stored_held -= 1
            firing.start_soon(self._services.retrying, "timers", partial(self._fire, timer))


async def fire_timer(
    live: LiveExecutions, schedules: Schedules | None, timer: Suspension | ScheduleSlot
) -> None:
    """A deadline passed: wake the node, here or by taking its execution from the
    store (one that cannot be carried on here is left to the other engines alive,
    or fails with an error that says why); or a schedule's time came. Raises
    :class:`StoreError` (tried again)."""
    if isinstance(timer, ScheduleSlot):
        if schedules is not None:
            await schedules.fire(timer)
        return
    try:
        await live.deliver(timer.execution_id, WakeRequest(execution_index=timer.execution_index))
    except ExecutionNotFound:
        return
    except Unrestorable as exc:
        await live.cannot_restore(exc)


async def arm_due_timers(store: Store, timers: TimerActor, clock: Clock, horizon: float) -> None:
    """Arm the timers kept in the store that come due within ``horizon`` seconds (or
    are overdue), wherever they were set: a wait another engine set is fired here
    too if that engine has stopped. Where several engines fire one timer, the first
    to take the execution wakes it; the others find it taken and do nothing."""
    for suspension in await store.timers(before=clock.now() + horizon):
        timers.add(suspension)
