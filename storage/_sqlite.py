"""The SQLite store: prana's embedded default (DESIGN §7, §8).

The store's queries: what it keeps, and how records become rows and back
(:mod:`._sqlite_rows`). How a statement runs, on which thread and how it waits for
another process's lock, is the private policy of :mod:`._sqlite_runner`; opening a
file, and what its refusals say, is in :mod:`._sqlite_file`.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from prana._errors import StoreError
from prana._records import (
    DEADLINE_INDEX,
    FINAL_STATUSES,
    Checkpoint,
    ExecutionStatus,
    StoredExecution,
    Suspension,
)
from prana._wanted import RunsSelector

from . import _codec as codec
from . import _sqlite_rows as rows
from ._engines import EngineBeat, beat
from ._filters import execution_filter
from ._protocol import ScheduleRow, ScheduleState, StoredWorkflow
from ._queue import claim_sql
from ._sqlite_file import describe_file, parse_url
from ._sqlite_reads import (
    SELECT_EXECUTION,
    SUSPENSION_COLUMNS,
    execution_from_row,
    load_execution,
    suspension_from_row,
)
from ._sqlite_rows import chunks
from ._sqlite_runner import Runner

T = TypeVar("T")
# A commit whose outputs hold more bytes than this runs on the runner's thread.
HEAVY_COMMIT = 1 << 18
Synchronous = Literal["OFF", "NORMAL", "FULL"]


class SQLiteStore:
    """Executions in a SQLite file.

    ``synchronous`` is SQLite's: ``NORMAL`` (the default; in WAL mode a commit
    survives a crash of the process, and of the machine except for the last moments
    before a power loss) or ``FULL`` (every commit is on disk before it returns).
    ``max_page_count`` caps the database's size, in pages; it exists for tests of a
    full disk. ``read_only`` opens an existing database for reading only: it never
    creates, migrates or changes the file, and every write raises :class:`StoreError`.
    """

    commits_at_once = 1  # SQLite has one writer
    commits_off_the_loop = False  # small commits run on the loop's thread

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
        self._runner: Runner | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """A store from ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``,
        with options as query parameters (``?synchronous=FULL``)."""
        path, parsed = parse_url(url)
        return cls(path, **{**parsed, **options})

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def check(self) -> str:
        """What opening the store would find, in words, changing nothing (a new file,
        a prana database at a schema version); raises :class:`StoreError` saying why
        it cannot be used (another program's database, a newer schema, read-only)."""
        return describe_file(self.path, busy_timeout=self.busy_timeout)

    # ------------------------------------------------------------------ lifetime

    async def open(self) -> None:
        """Open (and if need be create or migrate) the database; with ``read_only``,
        open it for reading only, creating nothing.

        Raises :class:`StoreError`, leaving the file as it was, if it is not a prana
        database this code can use (and, unless ``read_only``, write).
        """
        runner = Runner(
            self.path,
            synchronous=self.synchronous,
            busy_timeout=self.busy_timeout,
            max_page_count=self.max_page_count,
            read_only=self.read_only,
        )
        await runner.open()
        self._runner = runner

    async def maintain(self) -> None:
        """Checkpoint the WAL into the database as commits grow it, beside them on a
        connection and thread of its own, until cancelled; an engine runs it. (See
        :mod:`._sqlite_wal`.)"""
        await self._require_runner().maintain()

    async def listen(self, heard: Callable[[str], None]) -> None:
        """Nothing to hear (processes on one file poll)."""

    async def aclose(self) -> None:
        """Checkpoint the WAL into the database and close it."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.aclose()

    def _require_runner(self) -> Runner:
        if self._runner is None:
            raise StoreError(f"the store {self.path} is not open")
        return self._runner

    async def _write(
        self, function: Callable[[sqlite3.Connection], T], *, transaction: bool = True
    ) -> T:
        return await self._require_runner().write(function, transaction=transaction)

    async def _read(self, function: Callable[[sqlite3.Connection], T]) -> T:
        return await self._require_runner().read(function)

    # ------------------------------------------------------------------ writes

    async def commit(
        self, checkpoints: Sequence[Checkpoint], *, owner: str, lease_expires: float, now: float
    ) -> set[str]:
        """Apply checkpoints in one transaction; return the ids it does not own.

        It commits at once, without letting other tasks run, when nothing stands in
        the way (the store not opening or closing, no lock held by another
        connection, the WAL not far too long: see :mod:`._sqlite_wal`); otherwise it
        waits for that, asleep."""
        saving = rows.saving(checkpoints, owner, lease_expires, now)
        runner = self._require_runner()
        if saving.size > HEAVY_COMMIT:
            # Megabytes to copy into pages: on the runner's thread, where SQLite lets
            # the loop run meanwhile (decision 0044).
            return await runner.write(saving.save, transaction=saving.transaction, on_thread=True)
        lost = runner.write_now(saving.save, transaction=saving.transaction)
        if lost is None:
            lost = await runner.write(saving.save, transaction=saving.transaction)
        return lost

    async def save_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a definition, once per hash."""
        text = codec.dumps(workflow.definition)
        await self._write_sized(lambda db: _insert_definition(db, workflow, text), len(text))

    async def keep_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a definition as the one served for its id."""
        text = codec.dumps(workflow.definition)

        def keep(db: sqlite3.Connection) -> None:
            _insert_definition(db, workflow, text)
            db.execute(
                "INSERT INTO kept_workflows (id, hash) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET hash = excluded.hash",
                (workflow.id, workflow.hash),
            )

        await self._write_sized(keep, len(text))

    async def _write_sized(self, function: Callable[[sqlite3.Connection], T], size: int) -> T:
        """A write of about ``size`` bytes: a heavy one on the runner's thread."""
        return await self._require_runner().write(function, on_thread=size > HEAVY_COMMIT)

    async def kept_workflows(self) -> list[StoredWorkflow]:
        """The definitions kept to be served, by id."""

        def fetch(db: sqlite3.Connection) -> list[StoredWorkflow]:
            rows = db.execute(
                "SELECT w.hash, w.id, w.version, w.definition, w.created_at "
                "FROM kept_workflows k JOIN workflows w ON w.hash = k.hash ORDER BY k.id"
            )
            return [_workflow_from_row(row) for row in rows]

        return await self._read(fetch)

    async def forget_kept_workflow(self, workflow_id: str) -> bool:
        """Serve ``workflow_id`` no more; false if none was kept."""

        def forget(db: sqlite3.Connection) -> bool:
            cursor = db.execute("DELETE FROM kept_workflows WHERE id = ?", (workflow_id,))
            return cursor.rowcount > 0

        return await self._write(forget)

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

    async def claim_queued(
        self,
        *,
        owner: str,
        lease_expires: float,
        now: float,
        limit: int,
        skip: Collection[str] = (),
    ) -> list[str]:
        """Claim queued executions that may start (see :mod:`._queue`), in one write
        transaction."""

        def claim(db: sqlite3.Connection) -> list[str]:
            passed_by = codec.dumps(list(skip))
            ids = [row[0] for row in db.execute(_CLAIM, (now, now, passed_by, limit))]
            for chunk in chunks(ids):
                db.execute(
                    "UPDATE executions SET owner = ?, lease_expires = ? "
                    f"WHERE status = 'queued' AND id IN ({', '.join('?' * len(chunk))})",
                    (owner, lease_expires, *chunk),
                )
            return ids

        return await self._write(claim)

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

        return await self._read(fetch)

    async def load_execution(
        self, execution_id: str, *, wanted: RunsSelector | None = None
    ) -> StoredExecution | None:
        """Everything kept of an execution (with ``wanted``, of its runs only those it
        asks for), or ``None``."""
        return await self._read(lambda db: load_execution(db, execution_id, wanted))

    async def execution_status(self, execution_id: str) -> ExecutionStatus | None:
        """An execution's status as saved, or ``None``."""
        found = await self.execution_revision(execution_id)
        return None if found is None else found[0]

    async def execution_revision(self, execution_id: str) -> tuple[ExecutionStatus, int] | None:
        """An execution's status and revision as saved, or ``None``."""
        sql = "SELECT status, revision FROM executions WHERE id = ?"
        return await self._read(lambda db: db.execute(sql, (execution_id,)).fetchone())

    async def count_executions(
        self, *, workflow_id: str | None = None
    ) -> dict[ExecutionStatus, int]:
        """How many executions have each status."""

        def fetch(db: sqlite3.Connection) -> dict[ExecutionStatus, int]:
            if workflow_id is None:
                rows = db.execute("SELECT status, count(*) FROM executions GROUP BY status")
            else:
                rows = db.execute(
                    "SELECT status, count(*) FROM executions WHERE workflow_id = ? GROUP BY status",
                    (workflow_id,),
                )
            return dict(rows.fetchall())

        return await self._read(fetch)

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
        started_after: float | None = None,
        started_before: float | None = None,
        older_than: tuple[float, str] | None = None,
    ) -> list[StoredExecution]:
        """Executions without their audit trails, newest first, filtered, a page at a
        time (see :meth:`Store.list_executions`)."""

        def fetch(db: sqlite3.Connection) -> list[StoredExecution]:
            clause, args = execution_filter(
                status=status,
                workflow_id=workflow_id,
                started_after=started_after,
                started_before=started_before,
                older_than=older_than,
                mark="?",
                started="e.started_at",
                prefix="e.",
            )
            found = db.execute(
                f"{SELECT_EXECUTION} {clause} ORDER BY e.started_at DESC, e.id DESC LIMIT ?",
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

        return await self._read(fetch)

    async def find_token(self, token: str) -> Suspension | None:
        """The waiting node with this resume token, or ``None``."""

        def fetch(db: sqlite3.Connection) -> Suspension | None:
            row = db.execute(
                f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE token = ?", (token,)
            ).fetchone()
            return None if row is None else suspension_from_row(row)

        return await self._read(fetch)

    async def timers(
        self,
        *,
        before: float | None = None,
        after: tuple[float, str, int] | None = None,
        limit: int | None = None,
    ) -> list[Suspension]:
        """Waiting nodes with a deadline, and the deadlines of executions that have
        not ended, earliest first (see :meth:`prana.storage.Store.timers`): each
        found through its index by time."""

        def fetch(db: sqlite3.Connection) -> list[Suspension]:
            latest = math.inf if before is None else before
            page = "" if limit is None else f" LIMIT {int(limit)}"
            wake, past = "wake_at <= ?", [latest]
            deadline, deadline_past = "deadline <= ?", [latest]
            past_after: list[Any] = list(after or ())
            if after is not None:
                wake += " AND (wake_at, execution_id, execution_index) > (?, ?, ?)"
                deadline += f" AND (deadline, id, {DEADLINE_INDEX}) > (?, ?, ?)"
            rows = db.execute(
                f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE {wake} "
                f"ORDER BY wake_at, execution_id, execution_index{page}",
                [*past, *past_after],
            )
            found = [suspension_from_row(row) for row in rows]
            deadlines = db.execute(
                f"SELECT id, deadline FROM executions WHERE {deadline} "
                f"AND status NOT IN {_FINAL} ORDER BY deadline, id{page}",
                [*deadline_past, *past_after],
            )
            found += [Suspension.deadline(row[0], row[1]) for row in deadlines]
            found.sort(key=_by_wake)
            return found if limit is None else found[:limit]

        return await self._read(fetch)

    async def finished_children(self) -> list[Suspension]:
        """Nodes waiting for a child execution that has ended."""

        def fetch(db: sqlite3.Connection) -> list[Suspension]:
            rows = db.execute(
                f"SELECT {', '.join('s.' + c for c in SUSPENSION_COLUMNS.split(', '))} "
                "FROM suspensions s JOIN executions c ON c.id = s.child_execution_id "
                f"WHERE c.status IN {_FINAL}"
            )
            return [suspension_from_row(row) for row in rows]

        return await self._read(fetch)

    async def abandoned_children(self) -> list[tuple[str, str, ExecutionStatus]]:
        """``sync`` children not ended whose parent has ended."""

        def fetch(db: sqlite3.Connection) -> list[tuple[str, str, ExecutionStatus]]:
            found = db.execute(
                "SELECT c.id, p.id, p.status FROM executions c "
                "JOIN executions p ON p.id = c.parent_execution_id "
                f"WHERE c.status NOT IN {_FINAL} AND c.mode = 'sync' AND p.status IN {_FINAL}"
            )
            return [(row[0], row[1], row[2]) for row in found]

        return await self._read(fetch)

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

        return await self._read(fetch)

    async def control_requests(self, owner: str) -> list[tuple[str, Mapping[str, Any]]]:
        """Requests (cancel, pause) left for executions that ``owner`` runs."""

        def fetch(db: sqlite3.Connection) -> list[tuple[str, Mapping[str, Any]]]:
            rows = db.execute(
                "SELECT id, request FROM executions WHERE owner = ? AND request IS NOT NULL",
                (owner,),
            )
            return [(row[0], codec.loads(row[1])) for row in rows]

        return await self._read(fetch)

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

    async def list_schedules(self) -> list[ScheduleRow]:
        """Every schedule trigger, by workflow id and trigger."""

        def fetch(db: sqlite3.Connection) -> list[ScheduleRow]:
            found = db.execute(
                "SELECT workflow_id, trigger, spec, next_at, pending_at, paused FROM schedules "
                "ORDER BY workflow_id, trigger"
            )
            return [
                ScheduleRow(
                    workflow_id=row[0],
                    trigger=row[1],
                    state=ScheduleState(
                        next_at=row[3], pending_at=row[4], spec=row[2], paused=bool(row[5])
                    ),
                )
                for row in found
            ]

        return await self._read(fetch)

    async def pause_schedule(self, workflow_id: str, trigger: str, paused: bool) -> bool:
        """Pause or resume a schedule trigger; false if there is none."""

        def change(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE schedules SET paused = ? WHERE workflow_id = ? AND trigger = ?",
                (int(paused), workflow_id, trigger),
            )
            return cursor.rowcount > 0

        return await self._write(change)

    async def schedule_started(self, workflow_id: str, trigger: str, pending_at: float) -> None:
        """Forget the pending firing at ``pending_at``: its execution is saved."""

        def forget(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE schedules SET pending_at = NULL "
                "WHERE workflow_id = ? AND trigger = ? AND pending_at = ?",
                (workflow_id, trigger, pending_at),
            )

        await self._write(forget)

    async def beat(self, owner: str, *, now: float, stale_after: float) -> EngineBeat:
        """Note the engine's beat; lead if nobody else does (see :mod:`._engines`)."""
        return await self._write(lambda db: beat(db, "?", owner, now, stale_after))

    async def leave(self, owner: str) -> None:
        """Forget the engine."""
        await self._write(lambda db: db.execute("DELETE FROM engines WHERE owner = ?", (owner,)))


# The final statuses, as SQL: ('cancelled', 'completed', ...).
_CLAIM = claim_sql("?", "id IN (SELECT value FROM json_each(?))")
_FINAL = "(" + ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES)) + ")"


def _insert_definition(db: sqlite3.Connection, workflow: StoredWorkflow, text: str) -> None:
    """Keep a definition (``text``, as JSON), once per hash."""
    db.execute(
        "INSERT OR IGNORE INTO workflows (hash, id, version, definition, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (workflow.hash, workflow.id, workflow.version, text, workflow.created_at),
    )


def _workflow_from_row(row: Sequence[Any]) -> StoredWorkflow:
    return StoredWorkflow(
        hash=row[0], id=row[1], version=row[2], definition=codec.loads(row[3]), created_at=row[4]
    )


def _by_wake(suspension: Suspension) -> tuple[float, str, int]:
    return (suspension.wake_at or 0.0, suspension.execution_id, suspension.execution_index)
