"""Steps a supervisor saves with the next (decision 0069).

A step that took a pure action's result, and leads only to more pure runs called in
place, need not be saved on its own: the next step's checkpoint carries it. What
such steps made is bounded (:data:`PURE_STEPS` steps, a time, about
:data:`PURE_BYTES` of results), and the events they made are held here until they
are saved, so that nobody hears of a step a crash could take back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prana._events import Event
from prana._json import size_past
from prana._records import NodeResult

# At most this many steps, and about this many bytes of JSON of their results, are
# saved together: they bound what one checkpoint carries. And at most about this
# many seconds of their own work (not counting what other tasks did while they let
# the loop run, decision 0072), so that what a crash can take back stays short.
PURE_STEPS = 64
PURE_BYTES = 32 * 1024
PURE_SECONDS = 0.001
# Within that, the steps let the loop run whenever they have held it this long (a
# save was each step's yield, and an engine lets several executions step in one
# round of the loop, :mod:`._turns`).
PURE_SHARE = 0.0001


class UnsavedSteps:
    """The steps a supervisor took since its last save that wait for the next."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock  # seconds, of real time
        self.count = 0
        self._since = 0.0
        self._ran_from = 0.0
        self._left_at = 0.0  # when the steps last let the loop run, until they go on
        self._bytes = 0
        self._held: list[Event] = []
        # The last output sized, whole, and its size: a pure node that passes its
        # input on outputs the object its predecessor did.
        self._sized: tuple[Any, int] = (None, 8)

    def take(self, result: NodeResult) -> bool:
        """Count one more step, which took ``result``, if it may wait for the next
        save: fewer than :data:`PURE_STEPS` steps, that worked for at most about
        :data:`PURE_SECONDS`, with results of at most :data:`PURE_BYTES` in all. The
        steps' time runs from the first one's take, and stands still from when they
        let the loop run (:meth:`share_due`) to the next take."""
        now = self._clock()
        if not self.count:
            self._since, self._ran_from, self._bytes, self._left_at = now, now, 0, 0.0
        else:
            if self._left_at:
                # Back from letting the loop run: what other tasks did meanwhile is not
                # these steps' work (with many executions stepping, it is most of the
                # time), so the steps' time goes on from where it was.
                away = now - self._left_at
                self._since += away
                self._ran_from += away
                self._left_at = 0.0
            if self.count >= PURE_STEPS or now - self._since > PURE_SECONDS:
                return False
        self._bytes += self._size(result, PURE_BYTES - self._bytes)
        if self._bytes > PURE_BYTES:
            return False
        self.count += 1
        return True

    def _size(self, result: NodeResult, limit: int) -> int:
        data = result.data
        if data is self._sized[0]:
            size = self._sized[1]
        else:
            size = size_past(data, limit)
            if size <= limit:  # counted whole
                self._sized = (data, size)
        if result.node_context is not None or result.vars is not None:
            size += size_past((result.node_context, result.vars), limit - size)
        return size

    def share_due(self) -> bool:
        """Whether the steps have held the loop for :data:`PURE_SHARE` seconds since
        they began or last let it run (they are to let it run now)."""
        now = self._clock()
        if now - self._ran_from > PURE_SHARE:
            self._ran_from = self._left_at = now
            return True
        return False

    def hold(self, event: Event) -> None:
        """Keep ``event`` until the steps are saved."""
        self._held.append(event)

    def saved(self) -> list[Event]:
        """The steps were saved: the events they made, in order, to publish now."""
        self.count = 0
        held, self._held = self._held, []
        return held
