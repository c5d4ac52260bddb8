"""Time: the clock workflows see, and execution ids.

The engine's clock times node runs and drives waits (``wait.interval``, webhook
timeouts). Tests give the engine a :class:`VirtualClock`, whose time moves only
when they say, so a three-day wait is over in no time. Leases between engines are
about real processes and always use real time.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import time
from collections.abc import Iterator
from typing import Protocol

import anyio
import anyio.lowlevel


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
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._sleepers: list[tuple[float, int, _Wakeable]] = []
        self._counter = itertools.count()

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
        heapq.heappush(self._sleepers, (deadline, next(self._counter), woken))
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
            heapq.heappush(self._sleepers, (deadline, next(self._counter), canceller))
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


def new_execution_id(now: float) -> str:
    """A new execution id: 32 hex digits, sortable by creation time.

    The first 12 digits are milliseconds since the epoch, the other 20 are random,
    as in UUIDv7.
    """
    return f"{int(now * 1000) & 0xFFFFFFFFFFFF:012x}{os.urandom(10).hex()}"
