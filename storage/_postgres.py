"""The PostgreSQL store: executions in a PostgreSQL database that several engines
(on several machines) may share (DESIGN §14, decision 0057).

I/O policy: psycopg 3's synchronous driver with its connection pool, each call on
an anyio worker thread (at most ``pool_size`` at once), so that the same code serves
asyncio and trio (psycopg's async API runs on asyncio only). A call is one
transaction on one pooled connection. Ownership is the same as every store's
(:mod:`._protocol`): the rows of a batch of checkpoints are locked (``FOR UPDATE``)
and each checkpoint is applied only if the engine owns its execution (or, for a
``take``, may take it), so two engines never both apply a step of one execution.

The tables live in a PostgreSQL schema of their own (``prana``, or ``?schema=`` in
the URL), created and migrated on :meth:`open` under an advisory lock."""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from prana._errors import StoreError
from prana._records import (
    DEADLINE_INDEX,
    Checkpoint,
    ExecutionStatus,
    StoredExecution,
    Suspension,
)
from prana._wanted import RunsSelector

from . import _codec as codec
from ._engines import EngineBeat, beat
from ._filters import execution_filter
from ._postgres_notify import listen, notify
from ._postgres_rows import (
    Connection,
    Writes,
    insert_workflow,
    listed_executions,
    may_apply,
    moves_the_queue,
    ownership_after,
    read_execution,
    schedule_from_row,
    workflow_from_row,
)
from ._postgres_schema import (
    BEAT_LOCK,
    CLAIM_LOCK,
    FINAL,
    describe,
    migrate,
    parse_url,
    require_latest,
    session_options,
)
from ._protocol import ScheduleRow, ScheduleState, StoredWorkflow
from ._queue import claim_sql

T = TypeVar("T")


_OWNERSHIP = (
    "SELECT id, owner, lease_expires, status, revision, concurrency_limit IS NOT NULL "
    "FROM executions"
)
_CLAIM = claim_sql("%s", "id = ANY(%s::text[])")


class PostgresStore:
    """Keeps executions in PostgreSQL (see the module docstring)."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        """``read_only``: for reading what is there (``prana list``, ``show``): opening
        creates and migrates nothing, and refuses a database prana has not used."""
        self.url = url
        self.read_only = read_only
        self._conninfo, self.schema, self.pool_size = parse_url(url)
        self._pool: Any = None
        self._limiter = anyio.CapacityLimiter(self.pool_size)
        # Two commits in flight: one on its way to the disk while the checkpoints
        # that come meanwhile gather for the next. More split what waits into smaller
        # transactions, each paying a round trip and a sync, whose threads compete
        # for the interpreter with the loop (W4: ~15% slower with four); one leaves
        # the engine idle while a commit syncs (half as fast). The other connections
        # serve reads.
        self.commits_at_once = min(2, self.pool_size)
        self.commits_off_the_loop = True

    def __repr__(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"PostgresStore({parts.hostname or 'local'}{parts.path})"

    def check(self) -> str:
        """What opening the store would find, in words, changing nothing (``prana
        serve --check``); raises :class:`StoreError` saying why it cannot be used."""
        return self._on_one_connection(lambda db: describe(db, self.schema, repr(self)))

    def _on_one_connection(self, use: Callable[[Connection], T]) -> T:
        """``use`` a connection of its own; a :class:`StoreError` with libpq's own
        words if there is none (psycopg missing, a wrong URL, a server that is down)."""
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "the PostgreSQL store needs psycopg: pip install 'prana-runtime[postgres]'"
            ) from None
        try:
            with psycopg.connect(self._conninfo) as db:
                return use(db)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self!r}: {str(exc).strip()}; check the URL, "
                "that the server runs, and that its user may connect"
            ) from None

    # ------------------------------------------------------------------ lifetime

    async def open(self) -> None:
        """Connect, and create or migrate the schema. Raises :class:`StoreError`
        saying why the database cannot be used."""
        # One connection first: if there is none, its error says why, at once.
        await anyio.to_thread.run_sync(self._on_one_connection, lambda db: None)
        import psycopg_pool

        pool = psycopg_pool.ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True, "options": session_options(self.schema)},
            open=False,
        )
        try:
            await anyio.to_thread.run_sync(lambda: pool.open(wait=True, timeout=10.0))
        except Exception as exc:
            await anyio.to_thread.run_sync(pool.close)
            raise StoreError(
                f"cannot connect to PostgreSQL at {self!r}: {exc}; check the URL, that the "
                "server runs, and that its user may connect"
            ) from None
        self._pool = pool
        try:
            if self.read_only:
                await self._run(lambda db: require_latest(db, self.schema, repr(self)))
            else:
                await self._run(lambda db: migrate(db, self.schema, repr(self)))
        except BaseException:
            await self.aclose()
            raise

    async def listen(self, heard: Callable[[str], None]) -> None:
        """Hear other processes' ``NOTIFY`` (see :mod:`._postgres_notify`)."""
        await listen(self._conninfo, self.schema, heard, repr(self))

    async def aclose(self) -> None:
        """Close the pool's connections."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await anyio.to_thread.run_sync(pool.close)

    async def maintain(self) -> None:
        """PostgreSQL keeps itself in shape (autovacuum): sleeps until cancelled."""
        await anyio.sleep_forever()

    async def _run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one transaction, on a worker thread."""
        pool = self._pool
        if pool is None:
            raise StoreError("the PostgreSQL store is not open")

        def call() -> T:
            import psycopg

            try:
                with pool.connection() as db, db.transaction():
                    return work(db)
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL at {self!r}: {exc}".strip()) from None

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    # ------------------------------------------------------------------ commits

    async def commit(
        self, checkpoints: Sequence[Checkpoint], *, owner: str, lease_expires: float, now: float
    ) -> set[str]:
        """Apply the checkpoints ``owner`` may apply, in one transaction; return the
        ids of the others."""

        def work(db: Connection) -> set[str]:
            ids = sorted({c.execution_id for c in checkpoints})  # locked in one order
            rows = db.execute(f"{_OWNERSHIP} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (ids,))
            kept = {row[0]: row for row in rows.fetchall()}
            lost: set[str] = set()
            queue_news = False
            # Each statement goes out once for the batch (Writes), and they go out one
            # after another without waiting for each answer (pipeline mode): a batch
            # costs a few round trips and a few calls, not some per checkpoint.
            writes = Writes(db)
            with db.pipeline():
                for checkpoint in checkpoints:
                    execution_id = checkpoint.execution_id
                    row = kept.get(execution_id)
                    if not may_apply(checkpoint, row, owner, now):
                        lost.add(execution_id)
                        continue
                    writes.add(checkpoint, row, owner, lease_expires, now)
                    queue_news = queue_news or moves_the_queue(checkpoint, row)
                    # A later checkpoint of it in the batch is checked against this one.
                    kept[execution_id] = ownership_after(checkpoint, row, owner, lease_expires)
                writes.write()
                if queue_news:
                    notify(db, self.schema, "queue")
            return lost

        return await self._run(work)

    # ------------------------------------------------------------------ workflows

    async def save_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a definition, once per hash."""
        await self._run(lambda db: insert_workflow(db, workflow))

    async def keep_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a definition as the one served for its id."""

        def work(db: Connection) -> None:
            insert_workflow(db, workflow)
            db.execute(
                "INSERT INTO kept_workflows (workflow_id, hash) VALUES (%s, %s) "
                "ON CONFLICT (workflow_id) DO UPDATE SET hash = excluded.hash",
                (workflow.id, workflow.hash),
            )

        await self._run(work)

    async def kept_workflows(self) -> list[StoredWorkflow]:
        """The definitions kept to be served, by id."""
        rows = await self._run(
            lambda db: db.execute(
                "SELECT w.hash, w.id, w.version, w.definition::text, w.created_at "
                "FROM kept_workflows k JOIN workflows w ON w.hash = k.hash ORDER BY k.workflow_id"
            ).fetchall()
        )
        return [workflow_from_row(row) for row in rows]

    async def forget_kept_workflow(self, workflow_id: str) -> bool:
        """Serve ``workflow_id`` no more; false if none was kept."""
        return await self._run(
            lambda db: (
                db.execute(
                    "DELETE FROM kept_workflows WHERE workflow_id = %s", (workflow_id,)
                ).rowcount
                > 0
            )
        )

    async def load_workflow(self, workflow_hash: str) -> StoredWorkflow | None:
        """The definition with this hash, or ``None``."""
        row = await self._run(
            lambda db: db.execute(
                "SELECT hash, id, version, definition::text, created_at FROM workflows "
                "WHERE hash = %s",
                (workflow_hash,),
            ).fetchone()
        )
        return None if row is None else workflow_from_row(row)

    async def find_workflow(
        self, workflow_id: str, version: int | None = None
    ) -> StoredWorkflow | None:
        """The definition of ``workflow_id`` at ``version``, or its highest version."""
        row = await self._run(
            lambda db: db.execute(
                "SELECT hash, id, version, definition::text, created_at FROM workflows "
                "WHERE id = %s AND (%s::integer IS NULL OR version = %s) "
                "ORDER BY version DESC, created_at DESC LIMIT 1",
                (workflow_id, version, version),
            ).fetchone()
        )
        return None if row is None else workflow_from_row(row)

    # ------------------------------------------------------------------ reading

    async def load_execution(
        self, execution_id: str, *, wanted: RunsSelector | None = None
    ) -> StoredExecution | None:
        """Everything kept of an execution (with ``wanted``, of its runs only those it
        asks for), or ``None``."""
        return await self._run(lambda db: read_execution(db, execution_id, wanted))

    async def execution_status(self, execution_id: str) -> ExecutionStatus | None:
        """An execution's status as saved, or ``None``."""
        found = await self.execution_revision(execution_id)
        return None if found is None else found[0]

    async def execution_revision(self, execution_id: str) -> tuple[ExecutionStatus, int] | None:
        """An execution's status and revision as saved, or ``None``."""
        sql = "SELECT status, revision FROM executions WHERE id = %s"
        row = await self._run(lambda db: db.execute(sql, (execution_id,)).fetchone())
        return None if row is None else (row[0], row[1])

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
        """Executions without their audit trails, newest first, a page at a time."""
        clause, values = execution_filter(
            status=status,
            workflow_id=workflow_id,
            started_after=started_after,
            started_before=started_before,
            older_than=older_than,
            mark="%s",
            started="COALESCE(started_at, 0)",
        )

        return await self._run(lambda db: listed_executions(db, clause, values, limit))

    async def count_executions(
        self, *, workflow_id: str | None = None
    ) -> dict[ExecutionStatus, int]:
        """How many executions have each status."""
        rows = await self._run(
            lambda db: db.execute(
                "SELECT status, count(*) FROM executions "
                "WHERE %s::text IS NULL OR workflow_id = %s GROUP BY status",
                (workflow_id, workflow_id),
            ).fetchall()
        )
        return dict(rows)

    async def find_token(self, token: str) -> Suspension | None:
        """The waiting node with this resume token, or ``None``."""
        row = await self._run(
            lambda db: db.execute(
                "SELECT record::text FROM suspensions WHERE token = %s LIMIT 1", (token,)
            ).fetchone()
        )
        return None if row is None else codec.structure(codec.loads(row[0]), Suspension)

    async def timers(
        self,
        *,
        before: float | None = None,
        after: tuple[float, str, int] | None = None,
        limit: int | None = None,
    ) -> list[Suspension]:
        """Waiting nodes with a deadline and the deadlines of executions that have not
        ended, earliest first (see :meth:`prana.storage.Store.timers`)."""
        latest = math.inf if before is None else before
        start = after if after is not None else (-math.inf, "", DEADLINE_INDEX - 1)

        def work(db: Connection) -> list[Suspension]:
            rows = db.execute(
                "SELECT wake_at, execution_id, execution_index, record::text FROM ("
                " SELECT wake_at, execution_id, execution_index, record FROM suspensions"
                "  WHERE wake_at IS NOT NULL AND wake_at <= %s"
                "  AND (wake_at, execution_id, execution_index) > (%s, %s, %s)"
                " UNION ALL"
                " SELECT deadline, id, %s, NULL FROM executions"
                f"  WHERE deadline IS NOT NULL AND status NOT IN {FINAL} AND deadline <= %s"
                "  AND (deadline, id, %s) > (%s, %s, %s)"
                ") t ORDER BY 1, 2, 3 LIMIT %s",
                (latest, *start, DEADLINE_INDEX, latest, DEADLINE_INDEX, *start, limit),
            ).fetchall()
            return [
                Suspension.deadline(execution_id, at)
                if record is None
                else codec.structure(codec.loads(record), Suspension)
                for at, execution_id, _, record in rows
            ]

        return await self._run(work)

    async def finished_children(self) -> list[Suspension]:
        """Nodes waiting for a child execution that has ended."""
        rows = await self._run(
            lambda db: db.execute(
                "SELECT s.record::text FROM suspensions s "
                "JOIN executions c ON c.id = s.child_execution_id "
                f"WHERE c.status IN {FINAL}"
            ).fetchall()
        )
        return [codec.structure(codec.loads(row[0]), Suspension) for row in rows]

    async def abandoned_children(self) -> list[tuple[str, str, ExecutionStatus]]:
        """``sync`` children not ended whose parent has ended."""
        rows = await self._run(
            lambda db: db.execute(
                "SELECT c.id, p.id, p.status FROM executions c "
                "JOIN executions p ON p.id = c.parent_execution_id "
                f"WHERE c.mode = 'sync' AND c.status NOT IN {FINAL} AND p.status IN {FINAL}"
            ).fetchall()
        )
        return [(child, parent, status) for child, parent, status in rows]

    # ------------------------------------------------------------------ control

    async def control_requests(self, owner: str) -> list[tuple[str, Mapping[str, Any]]]:
        """Requests (cancel, pause) left for executions that ``owner`` runs."""
        rows = await self._run(
            lambda db: db.execute(
                "SELECT id, request::text FROM executions "
                "WHERE owner = %s AND request IS NOT NULL ORDER BY id",
                (owner,),
            ).fetchall()
        )
        return [(execution_id, codec.loads(request)) for execution_id, request in rows]

    async def request_control(self, execution_id: str, request: Mapping[str, Any]) -> bool:
        """Leave a request for the engine running an execution; false if it is not
        running."""

        def work(db: Connection) -> bool:
            left: int = db.execute(
                "UPDATE executions SET request = %s WHERE id = %s AND status = 'running'",
                (codec.dumps(dict(request)), execution_id),
            ).rowcount
            if left:
                notify(db, self.schema, "control")
            return left > 0

        return await self._run(work)

    # ------------------------------------------------------------------ schedules

    async def arm_schedule(
        self, workflow_id: str, trigger: str, *, spec: str, first_at: float, replace: bool = True
    ) -> ScheduleState:
        """The state of a schedule trigger, made anew if it is new or (with
        ``replace``) changed."""

        def work(db: Connection) -> ScheduleState:
            db.execute(
                "INSERT INTO schedules (workflow_id, trigger, spec, next_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (workflow_id, trigger) DO "
                + (
                    "UPDATE SET spec = excluded.spec, next_at = excluded.next_at "
                    "WHERE schedules.spec <> excluded.spec"
                    if replace
                    else "NOTHING"
                ),
                (workflow_id, trigger, spec, first_at),
            )
            row = db.execute(
                "SELECT spec, next_at, pending_at, paused FROM schedules "
                "WHERE workflow_id = %s AND trigger = %s",
                (workflow_id, trigger),
            ).fetchone()
            return schedule_from_row(row)

        return await self._run(work)

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
        """Claim the firing due at ``due_at``; false if another engine did."""
        return await self._run(
            lambda db: (
                db.execute(
                    "UPDATE schedules SET next_at = %s, pending_at = %s "
                    "WHERE workflow_id = %s AND trigger = %s AND next_at = %s "
                    "AND (%s::text IS NULL OR spec = %s)",
                    (next_at, pending_at, workflow_id, trigger, due_at, spec, spec),
                ).rowcount
                > 0
            )
        )

    async def list_schedules(self) -> list[ScheduleRow]:
        """Every schedule trigger, by workflow id and trigger."""
        rows = await self._run(
            lambda db: db.execute(
                "SELECT workflow_id, trigger, spec, next_at, pending_at, paused FROM schedules "
                "ORDER BY workflow_id, trigger"
            ).fetchall()
        )
        return [ScheduleRow(row[0], row[1], schedule_from_row(row[2:])) for row in rows]

    async def pause_schedule(self, workflow_id: str, trigger: str, paused: bool) -> bool:
        """Pause or resume a schedule trigger; false if there is none."""
        return await self._run(
            lambda db: (
                db.execute(
                    "UPDATE schedules SET paused = %s WHERE workflow_id = %s AND trigger = %s",
                    (paused, workflow_id, trigger),
                ).rowcount
                > 0
            )
        )

    async def schedule_started(self, workflow_id: str, trigger: str, pending_at: float) -> None:
        """Forget the pending firing at ``pending_at``: its execution is saved."""
        await self._run(
            lambda db: db.execute(
                "UPDATE schedules SET pending_at = NULL "
                "WHERE workflow_id = %s AND trigger = %s AND pending_at = %s",
                (workflow_id, trigger, pending_at),
            )
        )

    # ------------------------------------------------------------------ leases

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
        only = None if execution_ids is None else list(execution_ids)
        rows = await self._run(
            lambda db: db.execute(
                "UPDATE executions SET owner = %s, lease_expires = %s "
                "WHERE status = 'running' AND (%s::text[] IS NULL OR id = ANY(%s)) "
                "AND (owner IS NULL OR owner = ANY(%s) OR COALESCE(lease_expires, 0) <= %s) "
                "RETURNING id",
                (owner, lease_expires, only, only, list(dead_owners), now),
            ).fetchall()
        )
        return sorted(row[0] for row in rows)

    async def claim_queued(
        self,
        *,
        owner: str,
        lease_expires: float,
        now: float,
        limit: int,
        skip: Collection[str] = (),
    ) -> list[str]:
        """Claim queued executions that may start (see :mod:`._queue`); claims run
        one at a time, under an advisory lock, so that two never share a key's room."""

        def work(db: Connection) -> list[str]:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
            ids = [row[0] for row in db.execute(_CLAIM, (now, now, list(skip), limit))]
            db.execute(
                "UPDATE executions SET owner = %s, lease_expires = %s "
                "WHERE status = 'queued' AND id = ANY(%s)",
                (owner, lease_expires, ids),
            )
            return ids

        return await self._run(work)

    async def renew(
        self, execution_ids: Iterable[str], *, owner: str, lease_expires: float
    ) -> set[str]:
        """Extend the leases ``owner`` holds; return the ids it holds."""
        ids = list(execution_ids)
        rows = await self._run(
            lambda db: db.execute(
                "UPDATE executions SET lease_expires = %s WHERE id = ANY(%s) AND owner = %s "
                "RETURNING id",
                (lease_expires, ids, owner),
            ).fetchall()
        )
        return {row[0] for row in rows}

    async def beat(self, owner: str, *, now: float, stale_after: float) -> EngineBeat:
        """Note the engine's beat; lead if nobody else does (see :mod:`._engines`);
        beats run one at a time, under an advisory lock."""

        def work(db: Connection) -> EngineBeat:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (BEAT_LOCK,))
            return beat(db, "%s", owner, now, stale_after)

        return await self._run(work)

    async def leave(self, owner: str) -> None:
        """Forget the engine."""
        await self._run(lambda db: db.execute("DELETE FROM engines WHERE owner = %s", (owner,)))
