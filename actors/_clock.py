"""Time: the clock workflows see, and execution ids.

The engine's clock times node runs and drives waits (``wait.interval``, webhook
timeouts). Tests give the engine a :class:`VirtualClock`, whose time moves only
when they say (or, with ``autojump``, whenever nothing else can happen), so a
three-day wait is over in no time. Leases between engines are about real processes
and always use real time.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import math
import os
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    import asyncio


class Clock(Protocol):
    """A source of wall-clock time, in seconds since the epoch, that can be slept on."""

    def now(self) -> float:
        """The current time."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``. Cancellable."""
        ...

    def cancel_at(self, deadline: float) -> contextlib.AbstractContextManager[anyio.CancelScope]:
        """A cancel scope that is cancelled once ``now() >= deadline`` (its
        ``cancelled_caught`` tells whether that cut its body short)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``deadline``."""
        delay = deadline - time.time()
        if delay > 0:
            await anyio.sleep(delay)
        else:
            await anyio.lowlevel.checkpoint()

    def cancel_at(self, deadline: float) -> contextlib.AbstractContextManager[anyio.CancelScope]:
        """``anyio.move_on_after`` the time left until ``deadline``."""
        return anyio.move_on_after(max(0.0, deadline - time.time()))


class VirtualClock:
    """A clock for tests: its time moves only when you move it.

    ``advance(seconds)`` and ``set(moment)`` move it; :meth:`jump` moves it to the
    earliest moment something is waiting for (a node's deadline, say) and returns
    that moment. Whatever was sleeping until then wakes up.

    With ``autojump=True`` it also jumps by itself whenever every task waits (as
    trio's ``MockClock(autojump_threshold=0)`` does): an engine using it keeps time
    (:meth:`keep_time`) while it is open, so ``await engine.run(...)`` of a workflow
    with retry backoffs just completes, and ``engine.wait`` of one that waits for a
    timer returns once it has fired. A task waiting for a thread or the network
    counts as waiting too: time may jump meanwhile.
    """

    def __init__(self, start: float | None = None, *, autojump: bool = False) -> None:
        self._now = time.time() if start is None else float(start)
        self._sleepers: list[tuple[float, int, _Wakeable]] = []
        self._counter = itertools.count()
        self.autojump = autojump
        self._keepers_waiting: list[anyio.Event] = []  # set when a sleeper comes

    def now(self) -> float:
        """The virtual time."""
        return self._now

    @property
    def next_deadline(self) -> float | None:
        """The earliest moment something sleeps until, or ``None``."""
        self._forget_woken()
        return self._sleepers[0][0] if self._sleepers else None

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the clock is moved to ``deadline`` or past it."""
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        self._push(deadline, woken)
        try:
            await woken.wait()
        finally:
            woken.set()  # a cancelled sleeper no longer counts as waiting

    @contextlib.contextmanager
    def cancel_at(self, deadline: float) -> Iterator[anyio.CancelScope]:
        """A cancel scope cancelled when the clock is moved to ``deadline`` or past it."""
        scope = anyio.CancelScope()
        canceller = _Canceller(scope)
        if deadline <= self._now:
            canceller.set()
        else:
            self._push(deadline, canceller)
        try:
            with scope:
                yield scope
        finally:
            canceller.done = True  # no longer counts as waiting

    def set(self, moment: float) -> None:
        """Move the clock to ``moment`` (never backwards) and wake what is due."""
        if moment < self._now:
            raise ValueError(f"a clock does not go back ({moment} is before {self._now})")
        self._now = moment
        while self._sleepers and self._sleepers[0][0] <= moment:
            heapq.heappop(self._sleepers)[2].set()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.set(self._now + seconds)

    def jump(self) -> float | None:
        """Move the clock to the next deadline anything sleeps until; return it (or
        ``None`` if nothing sleeps)."""
        deadline = self.next_deadline
        if deadline is not None:
            self.set(deadline)
        return deadline

    async def keep_time(self) -> None:
        """With ``autojump``: whenever every other task waits, move to the next
        deadline anything sleeps until; runs until cancelled. An engine runs it while
        it is open; run it yourself in a task group for code without an engine."""
        _KEEPERS.add(_current_task())
        while True:
            await _until_all_wait()
            if self.next_deadline is None:
                added = anyio.Event()
                self._keepers_waiting.append(added)
                await added.wait()  # nothing to jump to until a sleeper comes
                continue
            self.jump()
            await anyio.lowlevel.checkpoint()

    def _push(self, deadline: float, sleeper: _Wakeable) -> None:
        heapq.heappush(self._sleepers, (deadline, next(self._counter), sleeper))
        for added in self._keepers_waiting:
            added.set()
        self._keepers_waiting.clear()

    def _forget_woken(self) -> None:
        # A cancelled sleeper leaves its entry behind; skip entries already set.
        while self._sleepers and self._sleepers[0][2].is_set():
            heapq.heappop(self._sleepers)


class _Wakeable(Protocol):
    def set(self) -> None: ...

    def is_set(self) -> bool: ...


class _Canceller:
    """A sleeper entry that cancels a scope instead of setting an event."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.done = False

    def set(self) -> None:
        self.done = True
        self.scope.cancel()

    def is_set(self) -> bool:
        return self.done


# The tasks keeping time for a virtual clock (one per engine using it): they do not
# count as busy for one another.
_KEEPERS: weakref.WeakSet[object] = weakref.WeakSet()
# A real-time deadline of the event loop this close (a store's short pause before it
# tries a locked write again, say) is waited for before virtual time jumps.
_NEAR = 0.1


def _current_task() -> object:
    import asyncio  # here: an app on trio never needs it

    try:
        return asyncio.current_task()
    except RuntimeError:  # not asyncio: trio
        import trio.lowlevel

        return trio.lowlevel.current_task()


async def _until_all_wait() -> None:
    """Return once every other task (but the time keepers) waits for something, and
    no real-time deadline of the event loop is about to pass."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        await _until_all_wait_trio()
    else:
        await _until_all_wait_asyncio(loop)


async def _until_all_wait_trio() -> None:
    import trio
    import trio.testing

    while True:
        await trio.testing.wait_all_tasks_blocked()
        statistics = trio.lowlevel.current_statistics()
        if statistics.run_sync_soon_queue_size:
            continue  # a thread's result is coming in
        if statistics.seconds_to_next_deadline > _NEAR:
            return
        await trio.sleep(max(0.0, statistics.seconds_to_next_deadline))


async def _until_all_wait_asyncio(loop: asyncio.AbstractEventLoop) -> None:
    import asyncio

    # A task that waits has a future it waits on (asyncio's ``_fut_waiter``, which
    # anyio's own wait_all_tasks_blocked reads too); the loop's real-time timers are
    # its ``_scheduled`` heap.
    me = asyncio.current_task()
    rounds = 0
    while True:
        await asyncio.sleep(0)
        busy = False
        for task in asyncio.all_tasks():
            if task is me or task in _KEEPERS:
                continue
            waiter = getattr(task, "_fut_waiter", None)
            if waiter is None or waiter.done():
                busy = True
                break
        if not busy:
            scheduled = getattr(loop, "_scheduled", ())
            soonest = min(
                (handle.when() for handle in scheduled if not handle.cancelled()),
                default=math.inf,
            )
            left = soonest - loop.time()
            if left > _NEAR:
                return
            await asyncio.sleep(max(0.0, left))
            continue
        rounds += 1
        if rounds % 64 == 0:
            await asyncio.sleep(0.001)  # a long stretch of work: look less often


def event_execution_id(key: str, event: str, workflow_id: str, trigger: str) -> str:
    """The id of the execution a published event starts with an idempotency key: the
    same for the same key, event, workflow and trigger (32 hex digits)."""
    seed = "\x1f".join(("event", key, event, workflow_id, trigger)).encode()
    return hashlib.blake2b(seed, digest_size=16).hexdigest()


def keyed_execution_id(key: str, workflow_id: str, trigger: str) -> str:
    """The id of the execution ``Engine.start`` starts with an idempotency key: the
    same for the same key, workflow and trigger (32 hex digits)."""
    seed = "\x1f".join(("start", key, workflow_id, trigger)).encode()
    return hashlib.blake2b(seed, digest_size=16).hexdigest()


def new_execution_id(now: float) -> str:
    """A new execution id: 32 hex digits, sortable by creation time.

    The first 12 digits are milliseconds since the epoch, the other 20 are random,
    as in UUIDv7.
    """
    return f"{int(now * 1000) & 0xFFFFFFFFFFFF:012x}{os.urandom(10).hex()}"
