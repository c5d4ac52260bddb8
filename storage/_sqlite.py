"""The SQLite store: prana's embedded default (DESIGN §7, §8).

Opening and closing run the stdlib ``sqlite3`` module on a worker thread through
anyio (``anyio.to_thread.run_sync`` with a limiter of one, owned by the store), so
the same code serves asyncio and trio. Reads and writes run on the loop's thread
(decisions 0018, 0026, 0028, 0029, 0030); writes wait for another connection's
lock there, asleep. With ``synchronous=NORMAL`` writes go only to the WAL in the
page cache and never sync; with ``FULL`` the loop waits for the disk's sync, once
per batch. On a worker thread, every statement and row would wait up to 5 ms for
Python's lock while the loop runs Python, which on a busy loop added up to seconds
or minutes. The database runs in WAL mode with ``busy_timeout`` and foreign keys;
every write is one transaction (``BEGIN IMMEDIATE``, or a single statement), every
read one read transaction. The WAL is checkpointed as it grows, while an engine uses
the store by :meth:`SQLiteStore.maintain`, on a connection and thread of its own
beside the commits (decision 0024).

Opening, and what its refusals say, is in :mod:`._sqlite_file`.
"""

from __future__ import annotations

import enum
import math
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from prana._errors import StoreError
from prana._records import (
    FINAL_STATUSES,
    Checkpoint,
    ExecutionStatus,
    StoredExecution,
    Suspension,
)

from . import _codec as codec
from . import _sqlite_rows as rows
from ._protocol import ScheduleState, StoredWorkflow
from ._sqlite_file import locked_error, open_connections, open_read_only, parse_url, store_error
from ._sqlite_rows import (
    SUSPENSION_COLUMNS,
    chunks,
    execution_from_row,
    suspension_from_row,
)
from ._sqlite_wal import WalKeeper

T = TypeVar("T")
Synchronous = Literal["OFF", "NORMAL", "FULL"]


class _Locked(enum.Enum):
    LOCKED = "locked"


LOCKED = _Locked.LOCKED


class SQLiteStore:
    """Executions in a SQLite file.

    ``synchronous`` is SQLite's: ``NORMAL`` (the default; in WAL mode a commit
    survives a crash of the process, and of the machine except for the last moments
    before a power loss) or ``FULL`` (every commit is on disk before it returns).
    ``max_page_count`` caps the database's size, in pages; it exists for tests of a
    full disk. ``read_only`` opens an existing database for reading only: it never
    creates, migrates or changes the file, and every write raises :class:`StoreError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        max_page_count: int | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.max_page_count = max_page_count
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._checkpoint_limiter: anyio.CapacityLimiter | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._wal = WalKeeper()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """A store from ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``,
        with options as query parameters (``?synchronous=FULL``)."""
        path, parsed = parse_url(url)
        return cls(path, **{**parsed, **options})

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # ------------------------------------------------------------------ lifetime

    async def open(self) -> None:
        """Open (and if need be create or migrate) the database.

        Raises :class:`StoreError`, leaving the file as it was, if it is not a prana
        database this code can use and write.
        """
        self._limiter = anyio.CapacityLimiter(1)
        self._checkpoint_limiter = anyio.CapacityLimiter(1)
        await self._call(self._open)

    def _open(self) -> None:
        if self.read_only:
            self._reader = open_read_only(self.path, busy_timeout=self.busy_timeout)
            return
        self._db, self._reader, self._checkpointer = open_connections(
            self.path,
            synchronous=self.synchronous,
            busy_timeout=self.busy_timeout,
            max_page_count=self.max_page_count,
        )

    async def maintain(self) -> None:
        """Checkpoint the WAL into the database as commits grow it, beside them on a
        connection and thread of its own, until cancelled; an engine runs it. (See
        :mod:`._sqlite_wal`.)"""
        assert self._checkpoint_limiter is not None, "open the store first"
        if self.read_only:
            await anyio.sleep_forever()  # nothing is written, nothing to keep
        await self._wal.maintain(lambda: self._checkpointer, self._checkpoint_limiter)

    async def aclose(self) -> None:
        """Checkpoint the WAL into the database and close it."""
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

    async def _call_read(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on the event loop's thread, after letting other tasks run: on a
        thread, it would wait up to 5 ms for Python's lock after every row while the
        loop runs Python, which added up to minutes (decision 0030). A read is a few
        indexed lookups, or a listing of up to ``limit`` executions. A file locked by
        another process is waited for asleep, as a write waits."""
        await anyio.lowlevel.checkpoint()
        return await self._until_unlocked(lambda: self._read_on_loop(function), "read")

    async def _read_on_loop(self, function: Callable[[sqlite3.Connection], T]) -> T | _Locked:
        return self._read(function)

    def _connection(self) -> sqlite3.Connection:
        if self.read_only:
            raise StoreError(f"the store {self.path} is open for reading only")
        if self._db is None:
            raise StoreError(f"the store {self.path} is not open")
        return self._db

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        return store_error(exc, doing, self.path, self.busy_timeout)

    async def _write(
        self, function: Callable[[sqlite3.Connection], T], *, transaction: bool = True
    ) -> T:
        """Run ``function`` as one transaction (``BEGIN IMMEDIATE``, or without
        ``transaction`` the one statement it runs), waiting up to ``busy_timeout`` for
        another connection's write lock.

        It runs on the event loop's thread, and waits for a lock there, asleep: on a
        thread every statement would wait up to 5 ms for Python's lock while the loop
        runs Python (decisions 0026, 0028). With ``synchronous=FULL`` the loop waits
        for the disk's sync too (decision 0029).
        """
        while self._wal.held_up():
            await self._wal.wait_checkpointed()
        result = await self._until_unlocked(
            lambda: self._write_on_loop(function, transaction), "write to"
        )
        self._wal.committed()
        return result

    async def _until_unlocked(self, attempt: Callable[[], Awaitable[T | _Locked]], doing: str) -> T:
        """``attempt()`` until another process's lock no longer stops it, asleep
        between the tries (see :meth:`_lock_pauses`)."""
        pauses = self._lock_pauses(doing)
        while True:
            result = await attempt()
            if result is not LOCKED:
                return result
            await anyio.sleep(next(pauses))

    async def _write_on_loop(
        self, function: Callable[[sqlite3.Connection], T], transaction: bool
    ) -> T | _Locked:
        assert self._limiter is not None
        if not self._limiter.borrowed_tokens:
            return self._write_now(function, transaction)
        async with self._limiter:  # the store opening or closing on its thread
            return self._write_now(function, transaction)

    def _lock_pauses(self, doing: str) -> Iterator[float]:
        """How long to wait before each new try of a write (or read) that found the
        file locked: 1 ms, doubling up to 50 ms. Raises :class:`StoreError` once
        ``busy_timeout`` has passed since the first pause was asked for."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while (left := deadline - time.monotonic()) > 0:
            yield min(pause, left)
            pause = min(pause * 2, 0.05)
        raise locked_error(doing, self.path, self.busy_timeout)

    def _write_now(
        self, function: Callable[[sqlite3.Connection], T], transaction: bool
    ) -> T | _Locked:
        """Run the write on this thread: ``LOCKED``, having done nothing, if another
        connection holds the write lock. The writer's ``busy_timeout`` is 0, so that a
        write on the loop's thread never blocks it; the callers wait."""
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
            raise self._error(exc, "write to") from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._wal.commits += 1
        return result

    def _locked_or_raise(self, exc: sqlite3.Error, doing: str = "write to") -> _Locked:
        """``LOCKED`` if ``exc`` says another connection holds the lock; raise the
        :class:`StoreError` it means otherwise."""
        if isinstance(exc, sqlite3.OperationalError):
            lowered = str(exc).lower()
            if "locked" in lowered or "busy" in lowered:
                return LOCKED
        raise self._error(exc, doing) from None

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

    # ------------------------------------------------------------------ writes

    def _save_now(
        self, save: Callable[[sqlite3.Connection], set[str]], transaction: bool
    ) -> set[str] | None:
        assert self._limiter is not None
        if self._limiter.borrowed_tokens or self._wal.held_up():
            return None
        lost = self._write_now(save, transaction)
        if isinstance(lost, _Locked):
            return None
        self._wal.committed()
        return lost

    async def commit(
        self, checkpoints: Sequence[Checkpoint], *, owner: str, lease_expires: float, now: float
    ) -> set[str]:
        """Apply checkpoints in one transaction; return the ids it does not own.

        It commits at once, without letting other tasks run, when nothing stands in
        the way (the store not opening or closing, no lock held by another
        connection, the WAL not far too long: see :mod:`._sqlite_wal`); otherwise it
        waits for that, asleep."""
        save, transaction = rows.saving(checkpoints, owner, lease_expires, now)
        lost = self._save_now(save, transaction)
        if lost is None:
            lost = await self._write(save, transaction=transaction)
        return lost

    async def save_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a definition, once per hash."""

        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR IGNORE INTO workflows (hash, id, version, definition, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    workflow.hash,
                    workflow.id,
                    workflow.version,
                    codec.dumps(workflow.definition),
                    workflow.created_at,
                ),
            )

        await self._write(insert)

    async def claim_orphans(
        self,
        *,
        owner: str,
        lease_expires: float,
        now: float,
        dead_owners: Iterable[str] = (),
        execution_ids: Iterable[str] | None = None,
    ) -> list[str]:
        """Take running executions whose lease expired or whose owner is dead."""
        dead = tuple(dead_owners)
        owners = ", ".join("?" * len(dead)) or "NULL"
        only = None if execution_ids is None else list(execution_ids)
        ids = "" if only is None else f"AND id IN ({', '.join('?' * len(only)) or 'NULL'}) "

        def take(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "UPDATE executions SET owner = ?, lease_expires = ? WHERE status = 'running' "
                f"{ids}AND (owner IS NULL OR lease_expires <= ? OR owner IN ({owners})) "
                "RETURNING id",
                (owner, lease_expires, *(only or ()), now, *dead),
            ).fetchall()
            return sorted(row[0] for row in rows)

        return await self._write(take)

    async def renew(
        self, execution_ids: Iterable[str], *, owner: str, lease_expires: float
    ) -> set[str]:
        """Extend (or release) the leases ``owner`` holds; return the ids it holds."""
        ids = list(execution_ids)
        if not ids:
            return set()

        def extend(db: sqlite3.Connection) -> set[str]:
            held: set[str] = set()
            for chunk in chunks(ids):
                held.update(
                    row[0]
                    for row in db.execute(
                        f"UPDATE executions SET lease_expires = ? WHERE owner = ? "
                        f"AND id IN ({', '.join('?' * len(chunk))}) RETURNING id",
                        (lease_expires, owner, *chunk),
                    )
                )
            return held

        return await self._write(extend)

    # ------------------------------------------------------------------ reads

    async def load_workflow(self, workflow_hash: str) -> StoredWorkflow | None:
        """The definition with this hash, or ``None``."""

        def fetch(db: sqlite3.Connection) -> StoredWorkflow | None:
            row = db.execute(
                "SELECT hash, id, version, definition, created_at FROM workflows WHERE hash = ?",
                (workflow_hash,),
            ).fetchone()
            return None if row is None else _workflow_from_row(row)

        return await self._call_read(fetch)

    async def load_execution(self, execution_id: str) -> StoredExecution | None:
        """Everything kept of an execution, or ``None``."""

        return await self._call_read(lambda db: rows.load_execution(db, execution_id))

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
    ) -> list[StoredExecution]:
        """Executions without their audit trails, newest first, filtered."""

        def fetch(db: sqlite3.Connection) -> list[StoredExecution]:
            where: list[str] = []
            args: list[Any] = []
            if status is not None:
                where.append("e.status = ?")
                args.append(status)
            if workflow_id is not None:
                where.append("e.workflow_id = ?")
                args.append(workflow_id)
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            found = db.execute(
                f"{rows.SELECT_EXECUTION} {clause} ORDER BY e.started_at DESC, e.id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
            waiting: dict[str, list[Suspension]] = {}
            for chunk in chunks([row[0] for row in found]):
                for suspension in db.execute(
                    f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE execution_id IN "
                    f"({', '.join('?' * len(chunk))}) ORDER BY execution_index",
                    chunk,
                ):
                    waiting.setdefault(suspension[0], []).append(suspension_from_row(suspension))
            return [
                execution_from_row(row, suspensions=tuple(waiting.get(row[0], ()))) for row in found
            ]

        return await self._call_read(fetch)

    async def find_token(self, token: str) -> Suspension | None:
        """The waiting node with this resume token, or ``None``."""

        def fetch(db: sqlite3.Connection) -> Suspension | None:
            row = db.execute(
                f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE token = ?", (token,)
            ).fetchone()
            return None if row is None else suspension_from_row(row)

        return await self._call_read(fetch)

    async def timers(self, *, before: float | None = None) -> list[Suspension]:
        """Waiting nodes with a deadline, and the deadlines of executions that have
        not ended, earliest first."""

        def fetch(db: sqlite3.Connection) -> list[Suspension]:
            limit = math.inf if before is None else before
            rows = db.execute(
                f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE wake_at <= ?", (limit,)
            )
            found = [suspension_from_row(row) for row in rows]
            deadlines = db.execute(
                f"SELECT id, deadline FROM executions WHERE deadline <= ? AND status NOT IN {_FINAL}",
                (limit,),
            )
            found += [Suspension.deadline(row[0], row[1]) for row in deadlines]
            return sorted(found, key=_by_wake)

        return await self._call_read(fetch)

    async def finished_children(self) -> list[Suspension]:
        """Nodes waiting for a child execution that has ended."""

        def fetch(db: sqlite3.Connection) -> list[Suspension]:
            rows = db.execute(
                f"SELECT {', '.join('s.' + c for c in SUSPENSION_COLUMNS.split(', '))} "
                "FROM suspensions s JOIN executions c ON c.id = s.child_execution_id "
                f"WHERE c.status IN {_FINAL}"
            )
            return [suspension_from_row(row) for row in rows]

        return await self._call_read(fetch)

    async def abandoned_children(self) -> list[tuple[str, str, ExecutionStatus]]:
        """``sync`` children not ended whose parent has ended."""

        def fetch(db: sqlite3.Connection) -> list[tuple[str, str, ExecutionStatus]]:
            found = db.execute(
                "SELECT c.id, p.id, p.status FROM executions c "
                "JOIN executions p ON p.id = c.parent_execution_id "
                f"WHERE c.status NOT IN {_FINAL} AND c.mode = 'sync' AND p.status IN {_FINAL}"
            )
            return [(row[0], row[1], row[2]) for row in found]

        return await self._call_read(fetch)

    async def find_workflow(
        self, workflow_id: str, version: int | None = None
    ) -> StoredWorkflow | None:
        """The stored definition of a workflow id: ``version``, or the highest version
        (the latest stored if several share it); ``None`` if there is none."""

        def fetch(db: sqlite3.Connection) -> StoredWorkflow | None:
            if version is None:
                row = db.execute(
                    "SELECT hash, id, version, definition, created_at FROM workflows WHERE id = ? "
                    "ORDER BY version DESC, created_at DESC LIMIT 1",
                    (workflow_id,),
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT hash, id, version, definition, created_at FROM workflows "
                    "WHERE id = ? AND version = ? ORDER BY created_at DESC LIMIT 1",
                    (workflow_id, version),
                ).fetchone()
            return None if row is None else _workflow_from_row(row)

        return await self._call_read(fetch)

    async def control_requests(self, owner: str) -> list[tuple[str, Mapping[str, Any]]]:
        """Requests (cancel, pause) left for executions that ``owner`` runs."""

        def fetch(db: sqlite3.Connection) -> list[tuple[str, Mapping[str, Any]]]:
            rows = db.execute(
                "SELECT id, request FROM executions WHERE owner = ? AND request IS NOT NULL",
                (owner,),
            )
            return [(row[0], codec.loads(row[1])) for row in rows]

        return await self._call_read(fetch)

    async def request_control(self, execution_id: str, request: Mapping[str, Any]) -> bool:
        """Leave a request for the engine running an execution; false if the execution
        is not running any more."""

        def leave(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE executions SET request = ? WHERE id = ? AND status = 'running'",
                (codec.dumps(request), execution_id),
            )
            return cursor.rowcount == 1

        return await self._write(leave)

    async def arm_schedule(
        self, workflow_id: str, trigger: str, *, spec: str, first_at: float, replace: bool = True
    ) -> ScheduleState:
        """The state of a schedule trigger, made anew if it is new or (with
        ``replace``) changed."""
        return await self._write(
            lambda db: rows.arm_schedule(db, workflow_id, trigger, spec, first_at, replace),
        )

    async def advance_schedule(
        self,
        workflow_id: str,
        trigger: str,
        *,
        due_at: float,
        next_at: float,
        pending_at: float,
        spec: str | None = None,
    ) -> bool:
        """Claim the firing due at ``due_at``; false if another engine did (or the
        schedule follows another ``spec``)."""
        return await self._write(
            lambda db: rows.advance_schedule(
                db, workflow_id, trigger, due_at, next_at, pending_at, spec
            ),
        )

    async def schedule_started(self, workflow_id: str, trigger: str, pending_at: float) -> None:
        """Forget the pending firing at ``pending_at``: its execution is saved."""

        def forget(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE schedules SET pending_at = NULL "
                "WHERE workflow_id = ? AND trigger = ? AND pending_at = ?",
                (workflow_id, trigger, pending_at),
            )

        await self._write(forget)

    async def owners(self) -> list[str]:
        """Owners of running executions."""

        def fetch(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT DISTINCT owner FROM executions WHERE status = 'running' AND owner IS NOT NULL"
            )
            return sorted(row[0] for row in rows)

        return await self._call_read(fetch)


# The final statuses, as SQL: ('cancelled', 'completed', ...).
_FINAL = "(" + ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES)) + ")"


def _workflow_from_row(row: Sequence[Any]) -> StoredWorkflow:
    return StoredWorkflow(
        hash=row[0], id=row[1], version=row[2], definition=codec.loads(row[3]), created_at=row[4]
    )


def _by_wake(suspension: Suspension) -> tuple[float, str, int]:
    return (suspension.wake_at or 0.0, suspension.execution_id, suspension.execution_index)
