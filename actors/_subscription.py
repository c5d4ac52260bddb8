"""Event subscriptions: bounded async iterators that never hold the engine up."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable

import anyio

from prana._events import Event, EventsDropped

logger = logging.getLogger("prana.engine")

Middleware = Callable[[Event], None]


class Subscription:
    """An async iterator over events, from the moment it was created.

    It holds at most ``limit`` unread events. When a slow reader lets it fill up, the
    oldest are dropped and the reader gets an :class:`EventsDropped` event saying how
    many before the next one. Iteration ends when the source closes it (the execution
    finished, or the engine stopped) and every buffered event has been read.
    """

    def __init__(self, limit: int, on_close: Callable[[Subscription], None] | None = None) -> None:
        if limit < 1:
            raise ValueError("a subscription needs room for at least one event")
        self._limit = limit
        self._buffer: deque[Event] = deque()
        self._dropped = 0
        self._closed = False
        self._wakeup: anyio.Event | None = None
        self._on_close = on_close

    def publish(self, event: Event) -> None:
        """Add an event without waiting; drops the oldest when the buffer is full."""
        if self._closed:
            return
        if len(self._buffer) >= self._limit:
            self._buffer.popleft()
            self._dropped += 1
        self._buffer.append(event)
        if self._wakeup is not None:
            self._wakeup.set()

    def close(self) -> None:
        """End the stream; the reader still gets what is buffered."""
        if self._closed:
            return
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._on_close is not None:
            self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._buffer:
                if self._dropped:
                    following = self._buffer[0]
                    dropped = EventsDropped(
                        execution_id=following.execution_id,
                        sequence=following.sequence,
                        time=following.time,
                        count=self._dropped,
                    )
                    self._dropped = 0
                    return dropped
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
            self._wakeup = None


class Publisher:
    """Fans one execution's events out to its subscriptions and the middleware."""

    def __init__(
        self, middleware: Iterable[Middleware], engine_subscriptions: set[Subscription]
    ) -> None:
        self._middleware = tuple(middleware)
        self._engine_subscriptions = engine_subscriptions
        self.subscriptions: set[Subscription] = set()

    @property
    def listening(self) -> bool:
        """Whether anyone hears events (so they are worth building)."""
        return bool(self.subscriptions or self._engine_subscriptions or self._middleware)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber and middleware hook, in that order.

        A middleware hook that raises is logged and skipped; it never stops the engine.
        """
        for subscription in self.subscriptions:
            subscription.publish(event)
        for subscription in self._engine_subscriptions:
            subscription.publish(event)
        for hook in self._middleware:
            try:
                hook(event)
            except Exception:
                logger.exception("middleware %r failed on %s", hook, type(event).__name__)

    def close(self) -> None:
        """End every subscription to this execution."""
        for subscription in list(self.subscriptions):
            subscription.close()
        self.subscriptions.clear()
