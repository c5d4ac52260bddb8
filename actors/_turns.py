"""Turns: how many executions of an engine take a step at once (DESIGN §7, "fair to
the host"; decision 0039).

prana runs in other people's event loops, where a loop runs every task that is ready
before it looks at its timers and sockets again. With a thousand executions ready at
once, one such round would run a thousand steps back to back, and the application's
own tasks would wait for all of them (about 90 ms on the benchmark machine). So an
execution steps (starts, is restored, takes a node's result in, commits) only while
it holds a turn, and gives it back whenever it waits for something other than its
commit: at most ``steps_at_once`` executions work between two rounds of the loop,
and the rest queue for a turn without being ready. A step is a few tens of
microseconds, so a round stays within a few milliseconds.

Turns are handed on first come, first served: a turn given back goes straight to the
longest waiter, so a busy execution cannot starve the others. Taking a turn always
lets the loop run once, even when one is free: otherwise a task that gives its turn
back and takes it again would step on and on in the same round.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel

DEFAULT_STEPS_AT_ONCE = 16


class Turns:
    """The turns of one engine's executions to take a step."""

    def __init__(self, steps_at_once: int = DEFAULT_STEPS_AT_ONCE) -> None:
        self._free = steps_at_once
        self._waiting: deque[anyio.Event] = deque()

    async def take(self) -> None:
        """Wait for a turn (first come, first served); cancelled, the caller has
        none."""
        if self._free and not self._waiting:
            self._free -= 1
            try:
                await anyio.lowlevel.checkpoint()
            except BaseException:
                self.give_back()
                raise
            return
        handed = anyio.Event()
        self._waiting.append(handed)
        try:
            await handed.wait()
        except BaseException:
            if handed.is_set():
                self.give_back()  # handed over as the wait was cancelled: pass it on
            else:
                self._waiting.remove(handed)
            raise

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[Turn]:
        """Inside, the caller holds a turn: given back at the end of the block, unless
        handed over (:meth:`Turn.hand_over`)."""
        await self.take()
        turn = Turn()
        try:
            yield turn
        finally:
            if not turn.handed_over:
                self.give_back()

    def give_back(self) -> None:
        """Give a turn back: to the longest waiter, if any."""
        if self._waiting:
            self._waiting.popleft().set()
        else:
            self._free += 1


class Turn:
    """A turn taken with :meth:`Turns.held`. Handed over to the supervisor of an
    execution the holder launches, it is that supervisor's to give back: the
    execution's first step follows its start without queueing again, so that a
    thousand executions started at once do not all sit in memory, half started,
    waiting for a second turn."""

    __slots__ = ("handed_over",)

    def __init__(self) -> None:
        self.handed_over = False

    def hand_over(self) -> None:
        """The turn is someone else's to give back now."""
        self.handed_over = True
