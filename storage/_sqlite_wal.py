"""Keeping the SQLite store's WAL short (decision 0024).

Every commit appends the pages it changed to the WAL; a checkpoint copies them into
the database file and lets the WAL start over. SQLite's own automatic checkpoint is
off: it would run inside a commit, and a checkpoint syncs, flushing the WAL to the
disk, which takes milliseconds. Instead:

* While an engine uses the store, :meth:`WalKeeper.maintain` checkpoints on a
  connection and thread of its own, beside the commits, about every ``_WAL_PAGES``
  pages written (how many commits that is is learnt from each checkpoint, which
  reports the WAL's length).
* The WAL starts over only at a commit that finds all of it in the database, which
  the commits made during that checkpoint prevent. So the next commit goes to the
  writer's thread and first checkpoints the few pages written meanwhile there.
* If the commits outrun the checkpoints by ``_WAL_BEHIND`` times the pages wanted,
  the next commit waits for the one under way and checkpoints on the writer's thread:
  the WAL stays bounded however fast executions write.
* A store nobody maintains (one used without an engine) checkpoints on the writer's
  thread before the commit that finds one due.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import anyio
import anyio.to_thread

_WAL_PAGES = 1000
_WAL_CHECK_FIRST = 16
_WAL_BEHIND = 1.5


class WalKeeper:
    """When the WAL of one SQLite store is checkpointed, and by whom.

    ``commits`` counts the commits since the WAL last started over (the store counts
    them, under its write limiter); checkpoints, beside the commits or on the
    writer's thread, are one at a time (``lock``).
    """

    def __init__(self) -> None:
        self.commits = 0
        self.every = _WAL_CHECK_FIRST  # commits between checkpoints, learnt
        self.maintained = False
        self.catch_up = False
        self.lock = anyio.Lock()
        self._grew = anyio.Event()

    def committed(self) -> None:
        """After a commit, on the event loop: wake :meth:`maintain` when it is time."""
        if (
            self.maintained
            and self.commits >= self.every
            and not self.catch_up
            and not self.lock.locked()  # a checkpoint is under way
        ):
            self._grew.set()

    def due(self) -> bool:
        """Whether the next commit must checkpoint first, on the writer's thread
        (under ``lock``)."""
        limit = self.every * _WAL_BEHIND if self.maintained else self.every
        return self.catch_up or self.commits >= limit

    async def maintain(
        self,
        connection: Callable[[], sqlite3.Connection | None],
        limiter: anyio.CapacityLimiter,
    ) -> None:
        """Checkpoint on ``connection()``'s thread (through ``limiter``) whenever
        :meth:`committed` says so, until cancelled. Cancelled, it waits for a
        checkpoint under way to end."""
        self.maintained = True
        try:
            while True:
                await self._grew.wait()
                self._grew = anyio.Event()
                async with self.lock:
                    if self.catch_up or self.commits < self.every:
                        continue  # the writer's thread checkpointed meanwhile
                    await anyio.to_thread.run_sync(
                        self._checkpoint_beside, connection(), self.commits, limiter=limiter
                    )
        finally:
            self.maintained = False

    def checkpoint_here(self, db: sqlite3.Connection) -> None:
        """Checkpoint on the writer's connection ``db``, between its transactions:
        all of the WAL, so that the next commit starts it over."""
        catching_up, self.catch_up = self.catch_up, False
        try:
            busy, pages, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            return  # the WAL is still valid; the next checkpoint takes it on
        if busy or pages < 0 or done < pages:
            return  # a reader holds on to part of it: the next checkpoint, then
        if not catching_up:
            self._learn(self.commits, pages)
        self.commits = 0

    def _checkpoint_beside(self, db: sqlite3.Connection | None, commits: int) -> None:
        if db is None:
            return  # the store closed
        try:
            _, pages, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            return
        self._learn(commits, pages)
        self.catch_up = True

    def _learn(self, commits: int, pages: int) -> None:
        """``commits`` made ``pages`` pages of WAL."""
        if pages > 0 and commits > 0:
            self.every = max(4, min(10_000, commits * _WAL_PAGES // pages))
