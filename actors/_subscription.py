"""Event subscriptions: bounded async iterators that never hold the engine up."""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from prana._events import Event, EventsDropped

logger = logging.getLogger("prana.engine")

# ``middleware(event, next)``: passes the event on (as it came, or changed) with
# ``next(event)``, or stops it by not calling ``next``. A hook of one argument,
# ``middleware(event)``, only looks: the event goes on after it.
Next = Callable[[Event], None]
Middleware = Callable[[Event, Next], None] | Callable[[Event], None]
ChainLink = Callable[[Event, Next], None]


def as_link(hook: Middleware) -> ChainLink:
    """``hook`` as a link of the middleware chain: a hook of one argument looks at
    the event and passes it on."""
    if _arguments(hook) >= 2:
        return hook  # type: ignore[return-value]
    looks: Callable[[Event], None] = hook  # type: ignore[assignment]

    def link(event: Event, next_: Next) -> None:
        try:
            looks(event)
        finally:
            next_(event)

    return link


def _arguments(hook: Any) -> int:
    """How many positional arguments ``hook`` takes at most."""
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


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

    def set_limit(self, limit: int) -> None:
        """Keep at most ``limit`` unread events from now on (the oldest go first)."""
        if limit < 1:
            raise ValueError("a subscription needs room for at least one event")
        self._limit = limit
        while len(self._buffer) > limit:
            self._buffer.popleft()
            self._dropped += 1

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
                return self._buffer.popleft().private_copy()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
            self._wakeup = None


class Publisher:
    """Passes one execution's events through the middleware chain, then out to its
    subscriptions."""

    def __init__(
        self, middleware: Iterable[ChainLink], engine_subscriptions: set[Subscription]
    ) -> None:
        self._middleware = tuple(middleware)
        self._engine_subscriptions = engine_subscriptions
        self.subscriptions: set[Subscription] = set()
        # While an execution is handed over to whoever started it (its handle, which
        # will keep its events, is not given out yet), someone is about to listen.
        self.handing_over = False

    def listening(self) -> bool:
        """Whether anyone hears events (so they are worth building)."""
        return bool(
            self.handing_over
            or self.subscriptions
            or self._engine_subscriptions
            or self._middleware
        )

    def publish(self, event: Event) -> None:
        """Pass ``event`` through the middleware, in order, each of which may change it
        or stop it; what comes out of the last reaches every subscriber.

        A middleware that raises is logged and contained: if it had not passed the
        event on, the event goes on as it came to it. It never stops the engine.
        """
        # Middleware may change what it is given: its own copy, as every reader's.
        self._pass(0, event.private_copy() if self._middleware else event)

    def _pass(self, position: int, event: Event) -> None:
        if position == len(self._middleware):
            for subscription in self.subscriptions:
                subscription.publish(event)
            for subscription in self._engine_subscriptions:
                subscription.publish(event)
            return
        hook = self._middleware[position]
        passed = False

        def next_(onward: Event) -> None:
            nonlocal passed
            passed = True
            self._pass(position + 1, onward)

        try:
            hook(event, next_)
        except Exception:
            logger.exception("middleware %r failed on %s", hook, type(event).__name__)
            if not passed:
                self._pass(position + 1, event)

    def close(self) -> None:
        """End every subscription to this execution."""
        for subscription in list(self.subscriptions):
            subscription.close()
        self.subscriptions.clear()
