"""The checkpoint writer: group commit for every supervisor of an engine (DESIGN §7).

Supervisors hand it checkpoints and wait. It takes every checkpoint waiting at that
moment, commits them in one transaction, and then answers each supervisor: saved,
lost (another engine owns the execution now), or the store's error. Under load,
many executions share one commit; alone, an execution waits for one commit per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio
import attrs
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from prana._errors import PranaError, StoreError
from prana._records import Checkpoint
from prana.storage import Store


@attrs.define(eq=False)
class _Pending:
    checkpoint: Checkpoint
    done: anyio.Event = attrs.field(factory=anyio.Event)
    lost: bool = False
    error: PranaError | None = None


class CheckpointWriter:
    """Commits checkpoints in batches; one per engine."""

    def __init__(self, store: Store, *, owner: str, lease: float, now: Callable[[], float]) -> None:
        self._store = store
        self._owner = owner
        self._lease = lease
        self._now = now
        send, receive = anyio.create_memory_object_stream[_Pending](math.inf)
        self._send: MemoryObjectSendStream[_Pending] = send
        self._receive: MemoryObjectReceiveStream[_Pending] = receive
        self.batches = 0
        self.written = 0

    async def write(self, checkpoint: Checkpoint) -> bool:
        """Save ``checkpoint``; return ``False`` if this engine no longer owns the
        execution (its checkpoint was not applied).

        Raises :class:`StoreError` if the store could not save it. If the caller is
        cancelled while waiting, the checkpoint may still be saved.
        """
        pending = _Pending(checkpoint)
        self._send.send_nowait(pending)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return not pending.lost

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until cancelled."""
        task_status.started()
        async with self._send, self._receive:
            while True:
                batch = [await self._receive.receive()]
                while True:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            lost = await self._store.commit(
                [pending.checkpoint for pending in batch],
                owner=self._owner,
                lease_expires=time.time() + self._lease,
                now=self._now(),
            )
        except StoreError as exc:
            for pending in batch:
                pending.error = exc
                pending.done.set()
            return
        self.batches += 1
        self.written += len(batch)
        for pending in batch:
            pending.lost = pending.checkpoint.execution_id in lost
            pending.done.set()
