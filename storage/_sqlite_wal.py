"""Keeping the SQLite store's WAL short (decisions 0024, 0028).

Every commit appends the pages it changed to the WAL; a checkpoint copies them into
the database file and lets the WAL start over. SQLite's own automatic checkpoint is
off: it would run inside a commit, and a checkpoint syncs, flushing the WAL to the
disk, which takes milliseconds. Instead:

* While an engine uses the store, :meth:`WalKeeper.maintain` checkpoints on a
  connection and thread of its own, beside the commits, about every ``_WAL_PAGES``
  pages written (how many commits that is is learnt from each checkpoint, which
  reports the WAL's length). It copies the WAL without holding up the commits
  (``PASSIVE``), then the few pages they wrote meanwhile, holding them off for that
  moment (``RESTART``), so that the next commit starts the WAL over.
* If the commits outrun the checkpoints by ``_WAL_BEHIND`` times the pages wanted
  (the checkpoints' thread did not get to run), the next commit checkpoints first,
  where it runs. If a checkpoint under way keeps it from that until the WAL is
  ``_WAL_LIMIT`` times as long as wanted, commits wait for that checkpoint (asleep):
  the WAL stays bounded however fast executions write.
* A store nobody maintains (one used without an engine) checkpoints the same way
  before the commit that finds one due.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import anyio
import anyio.to_thread

_WAL_PAGES = 1000
_WAL_CHECK_FIRST = 16
_WAL_BEHIND = 1.5
_WAL_LIMIT = 3


class WalKeeper:
    """When the WAL of one SQLite store is checkpointed, and by whom.

    ``commits`` counts the commits since the WAL last started over (the store counts
    them as it writes).
    """

    def __init__(self) -> None:
        self.commits = 0
        self.every = _WAL_CHECK_FIRST  # commits between checkpoints, learnt
        self.maintained = False
        self._grew = anyio.Event()
        # While a checkpoint runs beside the commits: set when it ends.
        self._beside: anyio.Event | None = None

    def committed(self) -> None:
        """After a write, on the event loop: wake :meth:`maintain` when it is time."""
        if self.maintained and self.commits >= self.every and self._beside is None:
            self._grew.set()

    def due(self) -> bool:
        """Whether the next commit must checkpoint first, where it runs."""
        limit = self.every * _WAL_BEHIND if self.maintained else self.every
        return self.commits >= limit

    def held_up(self) -> bool:
        """Whether commits must wait (:meth:`wait_checkpointed`): the WAL is far too
        long and the checkpoint under way beside keeps a commit from checkpointing."""
        return self._beside is not None and self.commits >= self.every * _WAL_LIMIT

    async def wait_checkpointed(self) -> None:
        """Wait for the checkpoint under way beside the commits to end."""
        if self._beside is not None:
            await self._beside.wait()

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
                if self.commits < self.every:
                    continue  # a commit checkpointed meanwhile
                beside = self._beside = anyio.Event()
                try:
                    counted = await anyio.to_thread.run_sync(
                        self._checkpoint_beside, connection(), self.commits, limiter=limiter
                    )
                finally:
                    self._beside = None
                    beside.set()
                # The commits counted before the WAL was let start over are in it.
                self.commits = max(0, self.commits - counted)
        finally:
            self.maintained = False

    def checkpoint_here(self, db: sqlite3.Connection) -> None:
        """Checkpoint on the writer's connection ``db``, between its transactions:
        all of the WAL, so that the next commit starts it over."""
        try:
            busy, pages, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            return  # the WAL is still valid; the next checkpoint takes it on
        if busy or pages < 0 or done < pages:
            return  # a reader holds on to part of it: the next checkpoint, then
        if not self.maintained:
            # (Maintained, the WAL may have started over since these commits were
            # counted: the checkpoints beside learn.)
            self._learn(self.commits, pages)
        self.commits = 0

    def _checkpoint_beside(self, db: sqlite3.Connection | None, commits: int) -> int:
        """Checkpoint on a connection of its own; how many of the commits counted are
        in a WAL that the next commit starts over (0 if it does not)."""
        if db is None:
            return 0  # the store closed
        try:
            _, pages, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self._learn(commits, pages)
            # Now the pages written meanwhile, with commits held off (for as long as
            # the connection's short busy_timeout at most, if a reader is slow).
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error:
            return 0
        return 0 if busy else self.commits

    def _learn(self, commits: int, pages: int) -> None:
        """``commits`` made ``pages`` pages of WAL."""
        if pages > 0 and commits > 0:
            self.every = max(4, min(10_000, commits * _WAL_PAGES // pages))
