"""Wake-ups between processes on one PostgreSQL database (``Store.listen``).

A transaction that may make work for other processes sends ``NOTIFY`` (with
``pg_notify``, as part of the transaction: it is heard only if it commits): on
``<schema>_queue`` when it queues an execution or ends one that held a place in the
queue, on ``<schema>_control`` when it leaves a control request. Each process listens
on one connection of its own, outside the pool, on a worker thread that waits for
notifications a short while at a time, so that it stops soon after it is told to.
A notification lost (the connection dropped) costs only time: engines look at the
queue and at control requests now and then anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from prana._errors import StoreError

Connection = Any  # psycopg.Connection: psycopg is an optional extra

TOPICS = ("queue", "control")
# How long the listening thread waits for a notification before it looks whether it
# should stop.
_PATIENCE = 0.25


def channel(schema: str, topic: str) -> str:
    """The channel of ``topic`` for the store in ``schema``."""
    return f"{schema}_{topic}"


def notify(db: Connection, schema: str, topic: str) -> None:
    """Tell the listening processes of ``topic``, once the caller's transaction
    commits."""
    db.execute("SELECT pg_notify(%s, '')", (channel(schema, topic),))


async def listen(conninfo: str, schema: str, heard: Callable[[str], None], where: str) -> None:
    """Call ``heard(topic)`` for each notification, until cancelled. Raises
    :class:`StoreError` if the connection fails."""
    stop = threading.Event()
    topics = {channel(schema, topic): topic for topic in TOPICS}

    def hear(topic: str) -> None:
        if not stop.is_set():
            heard(topic)

    def wait_for_notifications() -> None:
        import psycopg

        try:
            with psycopg.connect(conninfo, autocommit=True) as db:
                for name in topics:
                    db.execute(f'LISTEN "{name}"')
                anyio.from_thread.run_sync(hear, "listening")  # what came before: look now
                while not stop.is_set():
                    for notification in db.notifies(timeout=_PATIENCE):
                        anyio.from_thread.run_sync(hear, topics[notification.channel])
        except psycopg.Error as exc:
            if not stop.is_set():
                raise StoreError(f"PostgreSQL at {where} stopped telling of work: {exc}") from None
        except RuntimeError:
            pass  # the event loop is gone (anyio's RunFinishedError)

    try:
        await anyio.to_thread.run_sync(
            wait_for_notifications, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1)
        )
    finally:
        stop.set()
