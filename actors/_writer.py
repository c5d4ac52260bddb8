"""The checkpoint writer: group commit for every supervisor of an engine (DESIGN §7).

Supervisors hand it checkpoints (:meth:`CheckpointWriter.submit`) and wait for
their batch. It takes every checkpoint waiting at that moment, up to
``BATCH_LIMIT`` (the rest go in the next transactions), commits them in one
transaction, and then answers each supervisor: saved,
lost (another engine owns the execution now), or the store's error. Under load,
many executions share one commit; alone, an execution waits for one commit per step.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import anyio
import attrs
from anyio.abc import TaskStatus

from prana._errors import PranaError, StoreError
from prana._records import Checkpoint
from prana.storage import Store


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
# step in lock step), the rest go in the next ones, oldest first. A commit runs on the
# event loop's thread (decision 0026), so this bounds how long one holds the loop
# (a few milliseconds), and the size of one batch in memory.
BATCH_LIMIT = 256


class CheckpointWriter:
    """Commits checkpoints in batches; one per engine."""

    def __init__(
        self,
        store: Store,
        *,
        owner: str,
        lease: float,
        now: Callable[[], float],
        alone: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = store
        self._owner = owner
        self._lease = lease
        self._now = now
        self._alone = alone
        self._committing = False
        self._waiting: deque[Batch] = deque()
        self._wake = anyio.Event()
        self._closed = False
        self.batches = 0
        self.written = 0

    def commit_now(self, checkpoint: Checkpoint) -> bool | None:
        """Commit ``checkpoint`` on the spot when there is nothing to group it with:
        ``alone()`` says one execution runs, and nothing else is waiting or being
        committed. Whether it was applied (see :meth:`Batch.applied`), or ``None``,
        having done nothing, when it must go through :meth:`submit`.

        Raises :class:`StoreError` if the store could not save it.
        """
        if self._closed or self._committing or self._waiting or not self._alone():
            return None
        lost = self._store.commit_now(
            [checkpoint],
            owner=self._owner,
            lease_expires=time.time() + self._lease,
            now=self._now(),
        )
        if lost is None:
            return None
        self.batches += 1
        self.written += 1
        return checkpoint.execution_id not in lost

    def submit(self, checkpoint: Checkpoint) -> Batch:
        """Hand in ``checkpoint`` for the next transaction; wait for the batch's
        ``done`` event, then ask it :meth:`Batch.applied`.

        Raises :class:`StoreError` if the writer has stopped (the engine is closing).
        """
        if self._closed:
            raise StoreError("the engine is stopping: nothing more is saved")
        waiting = self._waiting
        if not waiting or len(waiting[-1].checkpoints) >= BATCH_LIMIT:
            waiting.append(Batch())
        batch = waiting[-1]
        batch.checkpoints.append(checkpoint)
        self._wake.set()
        return batch

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until cancelled: each takes the checkpoints handed in while
        the one before was committing, up to ``BATCH_LIMIT``."""
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self._waiting:
                    batch = self._waiting.popleft()
                    self._committing = True
                    try:
                        await self._commit(batch)
                    finally:
                        self._committing = False
        finally:
            # Checkpoints handed in as the engine stops are not saved: say so.
            self._closed = True
            for batch in self._waiting:
                batch.error = StoreError("the engine stopped before this checkpoint was saved")
                batch.done.set()

    async def _commit(self, batch: Batch) -> None:
        try:
            batch.lost = await self._store.commit(
                batch.checkpoints,
                owner=self._owner,
                lease_expires=time.time() + self._lease,
                now=self._now(),
            )
        except StoreError as exc:
            batch.error = exc
        else:
            self.batches += 1
            self.written += len(batch.checkpoints)
        batch.done.set()
