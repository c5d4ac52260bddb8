"""Live events as server-sent events, resumable with ``Last-Event-ID``.

An :class:`EventLog` keeps the engine's recent events in memory, numbered by their
position in the log, while anyone streams them (and for ``linger`` seconds after the
last stream closes, so that a client that reconnects finds what it missed). It
listens to the engine only then: building events costs the engine, and with nobody
streaming it builds none.

Two kinds of stream read it:

* one execution's (:func:`execution_stream`): each event's id is its sequence
  number, which the engine saves with the execution, so it goes on where it was
  whichever engine carries the execution on. The stream begins with a ``snapshot``
  event (the execution as it is, ``id`` its last event's number), unless the client
  sends ``Last-Event-ID`` and the log still holds every event after it: then those
  are sent again instead. It ends after the execution's end. An execution another
  daemon on the store carries on sends this process no events: the stream looks in
  the store when it has heard nothing for a while (``FIRST_LOOK``) and sends a new
  snapshot once the execution has moved on.
* every execution's (:func:`all_stream`): ids are ``EPOCH-POSITION``, positions in
  this process's log. It begins with an ``open`` event saying where it starts. A
  client that resumes from a position the log no longer holds (or from before this
  process started) gets a ``reset`` event instead: reload what it shows.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import anyio
import attrs
import orjson

import prana
from prana import events

logger = logging.getLogger("prana.server")

ENDED = events.EXECUTION_ENDED
KEEP_ALIVE = 15.0  # seconds between comments on a quiet stream
# Another daemon on the store may carry an execution on: this process then hears none
# of its events. A reader of one execution that has heard nothing of it for this long
# looks in the store, then after twice as long, up to KEEP_ALIVE, and again this soon
# once it found that the execution moved on.
FIRST_LOOK = 1.0
OPENED = b": listening\n\n"  # the first bytes of a stream: from now on, nothing is missed


def sse(event: str, data: Any, id: str | int | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


@attrs.define
class _Watch:
    """The events of one execution that a stream of it has not read yet: it wakes
    only for its own execution's events, not for every event of the log."""

    execution_id: str
    entries: deque[tuple[int, events.Event | None]] = attrs.field(factory=deque)
    changed: anyio.Event = attrs.field(factory=anyio.Event)
    seen: int = 0  # the number of the execution's last event its reader knows of
    look_after: float = attrs.field(factory=lambda: FIRST_LOOK)

    def add(self, entry: tuple[int, events.Event | None], most: int) -> None:
        if len(self.entries) >= most:  # a reader this far behind starts again
            self.entries.clear()
            entry = (entry[0], None)
        elif entry[1] is not None:
            self.seen = max(self.seen, entry[1].sequence)
        self.entries.append(entry)
        self.look_after = FIRST_LOOK
        self.changed.set()
        self.changed = anyio.Event()

    def saw(self, execution: prana.Execution) -> None:
        """Its reader read ``execution`` as it was (a snapshot)."""
        self.seen = max(self.seen, execution.last_event)


class EventLog:
    """The engine's recent events (at most ``size``), while streams read them."""

    def __init__(self, engine: prana.Engine, *, size: int = 10_000, linger: float = 60.0) -> None:
        self._engine = engine
        self._size = size
        self._linger = linger
        # (position, event) of the newest events; None marks events the log missed.
        self._entries: deque[tuple[int, events.Event | None]] = deque(maxlen=size)
        self.position = 0  # the position of the newest entry
        self.epoch = os.urandom(4).hex()
        self._appended: anyio.Event | None = None  # made by a reader that waits
        self._watches: dict[str, list[_Watch]] = {}
        self._readers = 0
        self._readers_changed = anyio.Event()
        self._subscription: prana.Subscription | None = None
        self.closed = False

    # ------------------------------------------------------------------ listening

    async def run(self) -> None:
        """Listen to the engine while there are readers, and ``linger`` seconds
        more (run in the daemon's task group until it stops)."""
        while not self.closed:
            subscription = self._subscription
            if subscription is None:
                await self._readers_changed.wait()
                continue
            async with anyio.create_task_group() as group:
                group.start_soon(self._listen, subscription)
                await self._until_idle()
                group.cancel_scope.cancel()
            subscription.close()
            self._subscription = None
            self._entries.clear()

    async def _listen(self, subscription: prana.Subscription) -> None:
        async for event in subscription:
            self._append(None if isinstance(event, events.EventsDropped) else event)

    async def _until_idle(self) -> None:
        while not self.closed:
            if self._readers:
                await self._readers_changed.wait()
                continue
            with anyio.move_on_after(self._linger) as idle:
                await self._readers_changed.wait()
            if idle.cancelled_caught and not self._readers:
                return

    def _append(self, event: events.Event | None) -> None:
        self.position += 1
        entry = (self.position, event)
        self._entries.append(entry)
        if self._appended is not None:
            self._appended.set()
            self._appended = None
        if event is None:
            for watches in self._watches.values():
                for watching in watches:
                    watching.add(entry, self._size)
        else:
            for watching in self._watches.get(event.execution_id, ()):
                watching.add(entry, self._size)

    def watch(self, execution_id: str) -> _Watch:
        """Keep ``execution_id``'s events for a stream of it, from now on."""
        watching = _Watch(execution_id)
        self._watches.setdefault(execution_id, []).append(watching)
        return watching

    def unwatch(self, watching: _Watch) -> None:
        """A stream stopped reading."""
        watches = self._watches.get(watching.execution_id, [])
        watches.remove(watching)
        if not watches:
            self._watches.pop(watching.execution_id, None)

    def _reader_change(self, by: int) -> None:
        self._readers += by
        self._readers_changed.set()
        self._readers_changed = anyio.Event()

    def acquire(self) -> None:
        """A stream starts reading: the log listens from now on, before the stream
        reads anything."""
        if self._subscription is None and not self.closed:
            self._subscription = self._engine.events(limit=self._size)
        self._reader_change(+1)

    def release(self) -> None:
        """A stream stopped reading."""
        self._reader_change(-1)

    def close(self) -> None:
        """End every stream (the daemon stops)."""
        self.closed = True
        if self._appended is not None:
            self._appended.set()
        self._readers_changed.set()
        for watches in self._watches.values():
            for watching in watches:
                watching.changed.set()

    # ------------------------------------------------------------------ reading

    def covers(self, after: int) -> bool:
        """Whether the log holds every entry after position ``after``."""
        oldest = self._entries[0][0] if self._entries else self.position + 1
        return oldest <= after + 1 and after <= self.position

    def since(self, after: int) -> list[tuple[int, events.Event | None]]:
        """The entries after position ``after`` the log holds, oldest first."""
        found = []
        for entry in reversed(self._entries):
            if entry[0] <= after:
                break
            found.append(entry)
        found.reverse()
        return found

    async def take_all(self, watching: _Watch) -> list[tuple[int, events.Event | None]] | None:
        """Every entry of ``watching`` not read yet, once there is one; ``[]`` after
        ``KEEP_ALIVE`` seconds without any; ``None`` once the log is closed."""
        if not watching.entries and not self.closed:
            await self._wait(watching)
        if self.closed:
            return None
        taken = list(watching.entries)
        watching.entries.clear()
        return taken

    async def _wait(self, watching: _Watch) -> bool:
        """Wait up to ``KEEP_ALIVE`` seconds for an entry of ``watching``; whether
        one came. Meanwhile look in the store now and then (``FIRST_LOOK``): an
        execution that moved on without its events coming here gets a missed-events
        entry, so that its reader starts again from its state."""
        quiet = 0.0
        while not watching.entries and not self.closed:
            within = min(watching.look_after, KEEP_ALIVE - quiet)
            if await _came(watching.changed, within):
                return True
            quiet += within
            if within == watching.look_after:
                if await self._moved_on(watching):
                    watching.add((self.position, None), self._size)
                    return True
                watching.look_after = min(2 * watching.look_after, KEEP_ALIVE)
            if quiet >= KEEP_ALIVE:
                return False
        return True

    async def _moved_on(self, watching: _Watch) -> bool:
        """Whether the execution is past the last event its reader knows of."""
        try:
            execution = await self._engine.get(watching.execution_id)
        except prana.PranaError as exc:  # the store failed: the reader goes on waiting
            logger.warning("could not look up execution %s: %s", watching.execution_id, exc)
            return False
        return execution.last_event > watching.seen

    async def follow(
        self, after: int
    ) -> AsyncGenerator[list[tuple[int, events.Event | None]], None]:
        """The entries after position ``after`` as they come, those that came together
        in one list (an entry ``(position, None)`` where the log missed some), and
        ``[]`` after each ``KEEP_ALIVE`` seconds without any. Ends when the log
        closes."""
        while not self.closed:
            if self.position > after:
                if not self.covers(after):
                    after = self.position
                    yield [(after, None)]
                    continue
                entries = self.since(after)
                after = entries[-1][0]
                yield entries
                continue
            if self._appended is None:
                self._appended = anyio.Event()
            if not await _came(self._appended):
                yield []


async def _came(changed: anyio.Event, within: float = KEEP_ALIVE) -> bool:
    """Wait for ``changed`` for ``within`` seconds at most; whether it came."""
    with anyio.move_on_after(within):
        await changed.wait()
    return changed.is_set()


async def execution_stream(
    log: EventLog, engine: prana.Engine, execution_id: str, last_event_id: str | None
) -> AsyncGenerator[bytes, None]:
    """One execution's events as server-sent events (see the module docstring)."""
    log.acquire()
    watching = log.watch(execution_id)
    try:
        yield OPENED
        start = log.position
        execution = await engine.get(execution_id)
        sent = execution.last_event
        watching.saw(execution)
        replay = _replay(log, execution, _int(last_event_id))
        if replay is None:
            yield sse("snapshot", execution.to_dict(), sent)
        else:
            for kept in replay:
                yield sse(type(kept).__name__, kept.to_dict(), kept.sequence)
        ended = execution.finished
        while not ended:
            # What came meanwhile goes out as one chunk: one write, not one per event.
            taken = await log.take_all(watching)
            if taken is None:
                return  # the daemon stops
            if not taken:
                yield b": keep-alive\n\n"
                continue
            chunk = []
            for position, event in taken:
                if event is None:  # the log missed events: start again from the state
                    execution = await engine.get(execution_id)
                    sent = execution.last_event
                    watching.saw(execution)
                    chunk.append(sse("snapshot", execution.to_dict(), sent))
                    ended = execution.finished
                elif position > start and event.sequence > sent:
                    sent = event.sequence
                    chunk.append(sse(type(event).__name__, event.to_dict(), event.sequence))
                    ended = isinstance(event, ENDED)
                if ended:
                    break
            if chunk:
                yield b"".join(chunk)
    finally:
        log.unwatch(watching)
        log.release()


def _replay(
    log: EventLog, execution: prana.Execution, resumed: int | None
) -> list[events.Event] | None:
    """The events of ``execution`` after number ``resumed`` up to its last, if the
    log holds every one of them (else ``None``: send a snapshot)."""
    if resumed is None or resumed > execution.last_event:
        return None
    kept = [
        event
        for _, event in log.since(0)
        if event is not None
        and event.execution_id == execution.id
        and resumed < event.sequence <= execution.last_event
    ]
    if [event.sequence for event in kept] != list(range(resumed + 1, execution.last_event + 1)):
        return None
    return kept


async def all_stream(log: EventLog, last_event_id: str | None) -> AsyncGenerator[bytes, None]:
    """Every execution's events as server-sent events (see the module docstring)."""
    log.acquire()
    try:
        yield OPENED
        start = log.position
        if last_event_id is not None:
            epoch, _, number = last_event_id.partition("-")
            after = _int(number)
            if epoch == log.epoch and after is not None and log.covers(after):
                start = after
            else:
                last_event_id = None
                yield sse("reset", _MISSED, f"{log.epoch}-{start}")
        if last_event_id is None:
            yield sse("open", {"epoch": log.epoch, "position": start}, f"{log.epoch}-{start}")
        async with aclosing(log.follow(start)) as batches:
            async for entries in batches:
                if not entries:
                    yield b": keep-alive\n\n"
                    continue
                yield b"".join(  # one write for what came together
                    sse("reset", _MISSED, f"{log.epoch}-{position}")
                    if event is None
                    else sse(type(event).__name__, event.to_dict(), f"{log.epoch}-{position}")
                    for position, event in entries
                )
    finally:
        log.release()


_MISSED = {"reason": "events were missed: reload what you show"}


def _int(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    return int(text.strip())
