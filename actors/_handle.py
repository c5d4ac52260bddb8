"""The handle of a started execution: its id, its events, its end."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable

from prana._records import Execution, ExecutionStatus

from ._subscription import Subscription
from ._supervisor import ExecutionSupervisor

DEFAULT_EVENT_BUFFER = 1000


class ExecutionHandle:
    """A started execution: its id, its events, and a way to wait for it to stop."""

    def __init__(
        self,
        supervisor: ExecutionSupervisor,
        follow: Callable[[Execution], Awaitable[Execution]],
    ) -> None:
        self._supervisor = supervisor
        self._follow = follow
        # The execution's events from its start, kept for the first events() call
        # while the handle lives (bounded like any subscription).
        self._first: Subscription | None = self._subscribe(DEFAULT_EVENT_BUFFER)
        weakref.finalize(self, self._first.close)

    @property
    def id(self) -> str:
        """The execution id."""
        return self._supervisor.execution_id

    @property
    def status(self) -> ExecutionStatus:
        """The status now."""
        return self._supervisor.machine.status

    def snapshot(self) -> Execution:
        """The execution as it is now, audit trail included."""
        return self._supervisor.machine.snapshot()

    def events(self, *, limit: int = DEFAULT_EVENT_BUFFER) -> Subscription:
        """Subscribe to this execution's events; iteration ends when the execution
        waits or ends.

        The first call sees every event from ``ExecutionStarted`` on, however long
        after :meth:`Engine.start` it comes; later calls see the events from then on.
        At most ``limit`` unread events are kept; a reader that falls further behind
        gets an ``EventsDropped`` event.
        """
        first, self._first = self._first, None
        if first is not None:
            first.set_limit(limit)
            return first
        return self._subscribe(limit)

    def _subscribe(self, limit: int) -> Subscription:
        publisher = self._supervisor.publisher
        subscription = Subscription(limit, on_close=publisher.subscriptions.discard)
        if self._supervisor.stopped or self._supervisor.failure is not None:
            subscription.close()
        else:
            publisher.subscriptions.add(subscription)
        return subscription

    async def result(self) -> Execution:
        """Wait until the execution waits (``suspended``) or ends, and return it.

        What does not count as a stop in :meth:`Engine.run` does not count here
        either: waiting only for ``sync`` child executions, or queued when this
        engine starts it at once. Raises :class:`PranaError` if the engine stopped first (the execution carries
        on when an engine next starts on the same store). Cancelling the wait does not
        cancel the execution.
        """
        return await self._follow(await self._supervisor.wait_stop())
