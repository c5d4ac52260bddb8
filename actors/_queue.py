"""The queue service: starts queued executions this engine claims (DESIGN §14;
decision 0058).

Executions of a workflow with a concurrency key are saved ``queued``
(:meth:`LiveExecutions.start`), and so is any new execution of an engine that runs
``max_running`` already (admission, decided here). Every engine on the store claims
the queued executions that may start (``Store.claim_queued``: a key's room, the
engine's room, priority, age) and starts them: at once when an execution is queued
here or one that was queued leaves memory here (it may have made room), when another
process on the store says so (``Store.listen``, decision 0059), and otherwise every
``interval`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio

from prana.storage import Store

from ._live import LiveExecutions
from ._ownership import Leases

# The most queued executions one claim takes.
CLAIM_BATCH = 100
# The most queued executions an engine remembers it cannot run.
CANNOT_RUN_KEPT = 1000


class QueueService:
    """Claims and starts queued executions for one engine, and says whether a new one
    starts at once (admission: at most ``max_running`` in memory)."""

    def __init__(
        self, store: Store, leases: Leases, interval: float, max_running: int | None = None
    ) -> None:
        self._store = store
        self._leases = leases
        # Queued executions this engine cannot run (a workflow whose actions it lacks,
        # say), left to the other engines alive; claims pass them by.
        self._cannot_run: set[str] = set()
        self._interval = interval
        self._max_running = max_running
        # Some executions without a key were queued here for want of room, since a
        # claim last found the queue empty: each one that leaves makes room worth a
        # claim.
        self._turned_away = False
        self._moved = anyio.Event()
        self._waiters: list[anyio.Event] = []  # for the end of the next pass
        self._passing = False

    def moved(self) -> None:
        """Something may have made room, or been queued: claim soon."""
        self._moved.set()

    def room(self, running: int) -> int | None:
        """How many more executions the engine takes with ``running`` in memory
        (``None``: no limit)."""
        if self._max_running is None:
            return None
        return max(0, self._max_running - running)

    def admits(self, running: int) -> bool:
        """Whether a new execution without a concurrency key starts at once."""
        return self.room(running) != 0

    def queued(self, *, keyed: bool) -> None:
        """A new execution is being queued here (for its key, or for want of room)."""
        self._turned_away = self._turned_away or not keyed

    def left(self, *, was_queued: bool) -> None:
        """An execution left memory here: one that was queued (saved queued, or
        ended or waiting after it was) may have made room for others of its key."""
        if was_queued or self._turned_away:
            self.moved()

    @property
    def pending(self) -> bool:
        """Whether something moved that no claim has looked at yet, or a claim is
        under way."""
        return self._moved.is_set() or self._passing

    async def next_pass(self) -> None:
        """Wait until a claim that begins after this call has ended (whether or not
        it claimed anything)."""
        done = anyio.Event()
        self._waiters.append(done)
        self.moved()
        await done.wait()

    async def run(
        self,
        live: LiveExecutions,
        retrying: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]],
    ) -> None:
        """Claim whenever :meth:`moved` says so, or ``interval`` has passed; until
        cancelled. Each pass runs under ``retrying`` (the engine's failure policy)."""
        first = True  # what was queued before this engine started, at once
        while True:
            if not first:
                with anyio.move_on_after(self._interval):
                    await self._moved.wait()
            first = False
            self._moved = anyio.Event()
            waiters, self._waiters = self._waiters, []
            self._passing = True
            try:
                await retrying(partial(self._claim_all, live))
            finally:
                self._passing = False
                for done in waiters:
                    done.set()

    async def _claim_all(self, live: LiveExecutions) -> None:
        while await self._claim(live) == CLAIM_BATCH:
            pass  # a full batch: there may be more, and room for them

    async def _claim(self, live: LiveExecutions) -> int:
        """Claim the queued executions that may start now and start them here;
        return how many were claimed."""
        leases = self._leases
        room = self.room(live.running)
        limit = CLAIM_BATCH if room is None else min(room, CLAIM_BATCH)
        if limit == 0:
            return 0  # full: another engine, or this one later, starts them
        lease_until = leases.deadline()
        claimed = await self._store.claim_queued(
            owner=leases.owner,
            lease_expires=leases.expiry(),
            now=time.time(),
            limit=limit,
            skip=self._cannot_run,
        )
        if len(claimed) < limit:
            self._turned_away = False  # the queue is empty, as far as this engine goes
        try:
            for problem in await live.start_claimed(claimed, lease_until):
                if await live.cannot_restore(problem):
                    self._pass_by(problem.stored.id)
        except BaseException:
            # Stopped (the engine is closing): what did not start here is left for
            # another engine at once, not when the claim's lease runs out.
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await leases.release([claim for claim in claimed if claim not in live])
            raise
        return len(claimed)

    def _pass_by(self, execution_id: str) -> None:
        """Claim ``execution_id`` no more: this engine cannot run it."""
        if len(self._cannot_run) >= CANNOT_RUN_KEPT:
            self._cannot_run.clear()  # try them again, now and then
        self._cannot_run.add(execution_id)
