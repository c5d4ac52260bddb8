"""How the SQLite store runs its statements: the store's private I/O policy.

Opening and closing run the stdlib ``sqlite3`` module on a worker thread through
anyio (``anyio.to_thread.run_sync`` with a limiter of one, owned by the runner), so
the same code serves asyncio and trio. Reads and writes run on the event loop's
thread (decisions 0018, 0026, 0028, 0029, 0030): on a worker thread, every statement
and row would wait up to 5 ms for Python's lock while the loop runs Python, which on
a busy loop added up to seconds or minutes. With ``synchronous=NORMAL`` a write goes
only to the WAL in the page cache and never syncs; with ``FULL`` the loop waits for
the disk's sync, once per transaction.

A statement never blocks the loop waiting for another process's lock: the
connections' own ``busy_timeout`` is 0, and a write (or read) that finds the file
locked sleeps on the loop and tries again, from 0.2 ms doubling up to 5 ms, until
the store's ``busy_timeout`` has passed; then it fails with a :class:`StoreError` that
says so. Every write is one transaction (``BEGIN IMMEDIATE``, or a single statement),
every read one read transaction, on a connection of its own (WAL lets it run beside a
write). The WAL is checkpointed as it grows, on a third connection and a thread of
its own, beside the commits (:mod:`._sqlite_wal`, decision 0024).
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from prana._errors import StoreError

from ._sqlite_file import locked_error, open_connections, open_read_only, store_error
from ._sqlite_wal import WalKeeper

T = TypeVar("T")


class _Locked(enum.Enum):
    LOCKED = "locked"


LOCKED = _Locked.LOCKED


class Runner:
    """The connections of one open SQLite store, and how statements run on them."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        busy_timeout: float,
        max_page_count: int | None,
        read_only: bool,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._max_page_count = max_page_count
        self._read_only = read_only
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._checkpoint_limiter = anyio.CapacityLimiter(1)
        self._wal = WalKeeper()

    # ------------------------------------------------------------------ lifetime

    async def open(self) -> None:
        """Open the connections (on the runner's thread). Raises :class:`StoreError`,
        leaving the file as it was, if it is not a prana database this code can use."""
        await self._call(self._open)

    def _open(self) -> None:
        if self._read_only:
            self._reader = open_read_only(self.path, busy_timeout=self.busy_timeout)
            return
        self._db, self._reader, self._checkpointer = open_connections(
            self.path,
            synchronous=self._synchronous,
            busy_timeout=self.busy_timeout,
            max_page_count=self._max_page_count,
        )

    async def maintain(self) -> None:
        """Checkpoint the WAL beside the commits until cancelled (see
        :mod:`._sqlite_wal`); a read-only store has nothing to keep."""
        if self._read_only:
            await anyio.sleep_forever()
        await self._wal.maintain(lambda: self._checkpointer, self._checkpoint_limiter)

    async def aclose(self) -> None:
        """Checkpoint the WAL into the database and close the connections."""
        # Reads run on this (the loop's) thread, never across an await: closing
        # their connection here cannot cut one short.
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        if self._db is not None:
            await self._call(self._close)

    def _close(self) -> None:
        db, self._db = self._db, None
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        if db is None:
            return
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the WAL is still valid; the next open replays it
        finally:
            db.close()

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    # ------------------------------------------------------------------ writes

    def write_now(
        self, function: Callable[[sqlite3.Connection], T], *, transaction: bool = True
    ) -> T | None:
        """Run the write at once, without letting other tasks run, if nothing stands
        in its way (the store not opening or closing, no lock held by another
        connection, the WAL not far too long); ``None``, having done nothing, if
        something does (then :meth:`write`)."""
        if self._limiter.borrowed_tokens or self._wal.held_up():
            return None
        result = self._write_now(function, transaction)
        if isinstance(result, _Locked):
            return None
        self._wal.committed()
        return result

    async def write(
        self,
        function: Callable[[sqlite3.Connection], T],
        *,
        transaction: bool = True,
        on_thread: bool = False,
    ) -> T:
        """Run ``function`` as one transaction (``BEGIN IMMEDIATE``, or without
        ``transaction`` the one statement it runs), waiting up to ``busy_timeout``
        for another connection's write lock, asleep. Raises :class:`StoreError`.

        ``on_thread``: on the runner's thread, for a write of megabytes, which SQLite
        copies into pages without Python's lock: the loop runs meanwhile, and the
        other writes wait for it (they take the runner's limiter)."""
        while self._wal.held_up():
            await self._wal.wait_checkpointed()
        writing = self._write_on_thread if on_thread else self._write_on_loop
        result = await self._until_unlocked(lambda: writing(function, transaction), "write to")
        self._wal.committed()
        return result

    async def _write_on_thread(
        self, function: Callable[[sqlite3.Connection], T], transaction: bool
    ) -> T | _Locked:
        return await self._call(self._write_now, function, transaction)

    async def _write_on_loop(
        self, function: Callable[[sqlite3.Connection], T], transaction: bool
    ) -> T | _Locked:
        if not self._limiter.borrowed_tokens:
            return self._write_now(function, transaction)
        async with self._limiter:  # the store opening or closing on its thread
            return self._write_now(function, transaction)

    def _write_now(
        self, function: Callable[[sqlite3.Connection], T], transaction: bool
    ) -> T | _Locked:
        """Run the write on this thread: ``LOCKED``, having done nothing, if another
        connection holds the write lock."""
        db = self._connection()
        if self._wal.due():  # checkpoints fell behind, or nobody maintains the store
            self._wal.checkpoint_here(db)
        try:
            if transaction:
                db.execute("BEGIN IMMEDIATE")
            result = function(db)
            if transaction:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            if not db.in_transaction:  # nothing was written
                return self._locked_or_raise(exc)
            db.execute("ROLLBACK")
            raise store_error(exc, "write to", self.path, self.busy_timeout) from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._wal.commits += 1
        return result

    def _connection(self) -> sqlite3.Connection:
        if self._read_only:
            raise StoreError(f"the store {self.path} is open for reading only")
        if self._db is None:
            raise StoreError(f"the store {self.path} is not open")
        return self._db

    # ------------------------------------------------------------------ reads

    async def read(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read as one read transaction on the event loop's thread, after
        letting other tasks run: a read is a few indexed lookups, or a listing of
        some executions. A file locked by another process is waited for asleep, as a
        write waits. Raises :class:`StoreError`."""
        await anyio.lowlevel.checkpoint()
        return await self._until_unlocked(lambda: self._read_on_loop(function), "read")

    async def _read_on_loop(self, function: Callable[[sqlite3.Connection], T]) -> T | _Locked:
        return self._read(function)

    def _read(self, function: Callable[[sqlite3.Connection], T]) -> T | _Locked:
        """Run the read as one read transaction, so that its queries see one state of
        the file even while another process commits: ``LOCKED`` if another
        connection keeps it from reading."""
        reader = self._reader
        if reader is None:
            raise StoreError(f"the store {self.path} is not open")
        try:
            reader.execute("BEGIN")
            result = function(reader)
            reader.execute("COMMIT")
        except sqlite3.Error as exc:
            if reader.in_transaction:
                reader.execute("ROLLBACK")
            return self._locked_or_raise(exc, "read")
        except BaseException:
            if reader.in_transaction:
                reader.execute("ROLLBACK")
            raise
        return result

    # ------------------------------------------------------------------ locks

    async def _until_unlocked(self, attempt: Callable[[], Awaitable[T | _Locked]], doing: str) -> T:
        """``attempt()`` until another process's lock no longer stops it, asleep
        between the tries (see :meth:`_lock_pauses`)."""
        pauses = self._lock_pauses(doing)
        while True:
            result = await attempt()
            if result is not LOCKED:
                return result
            await anyio.sleep(next(pauses))

    def _lock_pauses(self, doing: str) -> Iterator[float]:
        """How long to wait before each new try of a write (or read) that found the
        file locked: 0.2 ms, doubling up to 5 ms. Another process's write holds the
        lock for well under a millisecond, and a try costs microseconds; a short
        first pause is the next pass of a busy loop (a millisecond on an idle one).
        Raises :class:`StoreError` once ``busy_timeout`` has passed since the first
        pause was asked for."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.0002
        while (left := deadline - time.monotonic()) > 0:
            yield min(pause, left)
            pause = min(pause * 2, 0.005)
        raise locked_error(doing, self.path, self.busy_timeout)

    def _locked_or_raise(self, exc: sqlite3.Error, doing: str = "write to") -> _Locked:
        """``LOCKED`` if ``exc`` says another connection holds the lock; raise the
        :class:`StoreError` it means otherwise."""
        if isinstance(exc, sqlite3.OperationalError):
            lowered = str(exc).lower()
            if "locked" in lowered or "busy" in lowered:
                return LOCKED
        raise store_error(exc, doing, self.path, self.busy_timeout) from None
