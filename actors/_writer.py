"""The checkpoint writer: group commit for every supervisor of an engine (DESIGN §7).

A supervisor saves each checkpoint with :meth:`CheckpointWriter.save` and waits for
it. When it is the only one saving (:meth:`CheckpointWriter.saving`) and the writer is
idle, the checkpoint is committed at once, in the supervisor's own task: alone, an
execution pays for no hand-over to another task. Otherwise it joins the next batch
(a commit that does not wait for the disk does not let other tasks run, so with
several executions committing on the spot none would ever share a commit): the
writer's task takes every checkpoint waiting at that moment, up to ``BATCH_LIMIT``
(``BATCH_LIMIT_OFF_THE_LOOP`` for a store that commits on threads of its own; the
rest go in the next transactions), commits them in one transaction, and then
answers each supervisor: saved, lost (another engine owns the execution now), or the
store's error. Under load, many executions share one commit. A store that takes
several commits at once (``Store.commits_at_once``: PostgreSQL) gets that many
batches in flight, each in a task of its own; a supervisor has at most one
checkpoint in flight, so they touch different executions.

Either way a save lets other tasks run before it returns, so that a long chain of
quick nodes never holds the event loop for more than one step.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup, TaskStatus

from prana._errors import PranaError, StoreError
from prana._records import Checkpoint
from prana.storage import Store

from ._ownership import Leases
from ._tally import Tally


@attrs.define(eq=False)
class Batch:
    """Checkpoints committed together, and how that went: one per transaction, shared
    by every supervisor waiting on it."""

    checkpoints: list[Checkpoint] = attrs.field(factory=list)
    done: anyio.Event = attrs.field(factory=anyio.Event)
    lost: set[str] = attrs.field(factory=set)
    error: PranaError | None = None

    def applied(self, checkpoint: Checkpoint) -> bool:
        """Once ``done``: whether ``checkpoint`` was saved; ``False`` if this engine
        no longer owns its execution (it was not applied).

        Raises :class:`StoreError` if the store could not save the batch.
        """
        if self.error is not None:
            raise self.error
        return checkpoint.execution_id not in self.lost


# The most checkpoints one transaction takes. When more are waiting (many executions
# step in lock step), the rest go in the next ones, oldest first. A commit may run on
# the event loop's thread (the SQLite store's choice), so this bounds how long one
# holds the loop (a few milliseconds), and the size of one batch in memory.
BATCH_LIMIT = 64
# The same for a store that commits on threads of its own (PostgreSQL), where a commit
# does not hold the loop: larger transactions share a round trip and a sync among
# more checkpoints (W4 on PostgreSQL: ~20% faster than with 64).
BATCH_LIMIT_OFF_THE_LOOP = 256


class CheckpointWriter:
    """Commits checkpoints, in batches under load; one per engine."""

    def __init__(
        self, store: Store, leases: Leases, now: Callable[[], float], tally: Tally | None = None
    ) -> None:
        self._store = store
        self._tally = tally if tally is not None else Tally()
        self._leases = leases
        self._now = now
        # Transactions in flight, and how many the store takes at once (SQLite: one
        # writer; PostgreSQL: several, each on a connection of its own).
        self._committing = 0
        self._at_once = max(1, store.commits_at_once)
        # A store that commits on threads of its own (PostgreSQL): its savers need not
        # hold a turn while they wait, and its batches may be larger.
        self.commits_off_the_loop = store.commits_off_the_loop
        self._batch_limit = BATCH_LIMIT_OFF_THE_LOOP if self.commits_off_the_loop else BATCH_LIMIT
        self._savers = 0
        self._waiting: deque[Batch] = deque()
        self._wake = anyio.Event()
        self._closed = False
        self.batches = 0
        self.written = 0

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Count as a supervisor that saves checkpoints while inside."""
        self._savers += 1
        try:
            yield
        finally:
            self._savers -= 1

    async def save(self, checkpoint: Checkpoint) -> bool:
        """Commit ``checkpoint`` and return whether it was applied (``False``: this
        engine does not own its execution any more).

        Raises :class:`StoreError` if the store could not save it, or the engine is
        stopping. Cancelled, the checkpoint may or may not have been saved.
        """
        if self._closed:
            raise StoreError("the engine is stopping: nothing more is saved")
        if self._savers > 1 or self._committing or self._waiting:
            batch = self._submit(checkpoint)
            await batch.done.wait()
            return batch.applied(checkpoint)
        self._committing += 1
        try:
            lost = await self._commit([checkpoint])
        finally:
            self._committing -= 1
            if self._waiting:
                self._wake.set()  # what came meanwhile is the writer's to commit
        await anyio.lowlevel.checkpoint()
        return checkpoint.execution_id not in lost

    def _submit(self, checkpoint: Checkpoint) -> Batch:
        waiting = self._waiting
        if not waiting or len(waiting[-1].checkpoints) >= self._batch_limit:
            waiting.append(Batch())
        batch = waiting[-1]
        batch.checkpoints.append(checkpoint)
        self._wake.set()
        return batch

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until cancelled: each takes the checkpoints handed in while
        the one before was committing, up to the batch limit."""
        task_status.started()
        try:
            if self._at_once == 1:
                await self._commit_waiting(None)  # one at a time, in this task
            else:
                async with anyio.create_task_group() as group:
                    await self._commit_waiting(group)
        finally:
            # Checkpoints handed in as the engine stops are not saved: say so.
            self._closed = True
            for batch in self._waiting:
                batch.error = StoreError("the engine stopped before this checkpoint was saved")
                batch.done.set()

    async def _commit_waiting(self, group: TaskGroup | None) -> None:
        """Commit the batches waiting, as they come: in this task, or with a
        ``group``, up to ``_at_once`` at a time in tasks of their own."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._waiting and self._committing < self._at_once:
                batch = self._waiting.popleft()
                self._committing += 1
                if group is None:
                    await self._commit_batch(batch)
                else:
                    group.start_soon(self._commit_batch, batch)

    async def _commit_batch(self, batch: Batch) -> None:
        """Commit ``batch`` (counted in ``_committing`` already) and answer its savers."""
        try:
            batch.lost = await self._commit(batch.checkpoints)
        except StoreError as exc:
            batch.error = exc
        finally:
            self._committing -= 1
            if self._waiting:
                self._wake.set()
        batch.done.set()

    async def _commit(self, checkpoints: Sequence[Checkpoint]) -> set[str]:
        began = time.perf_counter()
        lost = await self._store.commit(
            checkpoints,
            owner=self._leases.owner,
            lease_expires=self._leases.expiry(),
            now=self._now(),
        )
        self._tally.committed(time.perf_counter() - began)
        self.batches += 1
        self.written += len(checkpoints)
        return lost
