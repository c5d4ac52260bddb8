"""Rows of the PostgreSQL store: applying a checkpoint, and making records of rows
(the store's transactions are in :mod:`._postgres`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from prana._records import (
    FINAL_STATUSES,
    Checkpoint,
    NodeRun,
    StoredExecution,
    Suspension,
)
from prana._wanted import RunsSelector, RunsWanted

from . import _codec as codec
from ._protocol import ScheduleState, StoredWorkflow
from ._queue import place_columns, place_of

Connection = Any  # psycopg.Connection: psycopg is an optional extra

EXECUTION_COLUMNS = (
    "id, workflow_id, workflow_version, workflow_hash, trigger, status, input, vars, paths, "
    "iteration_count, error, started_at, finished_at, updated_at, parent_execution_id, "
    "root_execution_id, owner, lease_expires, mode, depth, deadline, request, revision, "
    "concurrency_key, concurrency_limit, priority"
)


# The execution's columns, its JSON ones as text (decoded by orjson, not psycopg).
TEXT_COLUMNS = ", ".join(
    f"{name}::text" if name in ("input", "vars", "paths", "error", "request") else name
    for name in EXECUTION_COLUMNS.split(", ")
)


def may_apply(checkpoint: Checkpoint, row: Sequence[Any] | None, owner: str, now: float) -> bool:
    """Whether ``owner`` may apply ``checkpoint`` to the execution's ``row``."""
    if row is None:
        return checkpoint.kind == "start"
    if checkpoint.kind == "start":  # started already, by this engine or another
        return False
    _, held_by, lease, status, revision = row[:5]
    if checkpoint.kind == "take":
        free = held_by in (None, owner) or (lease or 0.0) <= now
        return status == checkpoint.take_from and free and revision == checkpoint.revision
    return bool(held_by == owner)


def ownership_after(
    checkpoint: Checkpoint, row: Sequence[Any] | None, owner: str, lease_expires: float
) -> tuple[Any, ...]:
    """The ownership columns of the execution's row once ``checkpoint`` is applied
    (as the ownership query reads them: id, owner, lease, status, revision, whether it
    was queued)."""
    running = checkpoint.status == "running"
    held_by = owner if running else None
    lease = lease_expires if running else None
    execution_id, status = checkpoint.execution_id, checkpoint.status
    if row is None:
        return (execution_id, held_by, lease, status, 1, checkpoint.queue is not None)
    if checkpoint.kind == "step":
        return (execution_id, held_by, row[2], status, row[4], row[5])
    return (execution_id, held_by, lease, status, row[4] + 1, row[5])


def moves_the_queue(checkpoint: Checkpoint, row: Sequence[Any] | None) -> bool:
    """Whether applying ``checkpoint`` may let a queued execution start: it queues
    one, or ends one that held a place in the queue."""
    if row is None:
        return checkpoint.status == "queued"
    return bool(row[5]) and checkpoint.status in FINAL_STATUSES


# An execution's row as a batch sends it: each field of the JSON array's objects, and
# its type (see ``_AS_ONE_ARRAY``). ``input`` comes as JSON text (an input of
# ``null`` is kept as the JSON ``null``, not as no value).
_ROW_FIELDS = (
    ("workflow_id", "text"), ("workflow_version", "integer"), ("workflow_hash", "text"),
    ("trigger", "text"), ("status", "text"), ("paths", "json"),
    ("iteration_count", "integer"), ("error", "json"), ("started_at", "float8"),
    ("finished_at", "float8"), ("updated_at", "float8"), ("parent_execution_id", "text"),
    ("root_execution_id", "text"), ("owner", "text"), ("mode", "text"),
    ("depth", "integer"), ("deadline", "float8"), ("vars", "json"),
    ("lease_expires", "float8"),
)  # fmt: skip
_NEW_FIELDS = (
    *_ROW_FIELDS, ("input", "text"), ("concurrency_key", "text"),
    ("concurrency_limit", "integer"), ("priority", "integer"),
)  # fmt: skip


def _recordset(fields: Sequence[tuple[str, str]]) -> str:
    typed = ", ".join(f"{name} {kind}" for name, kind in (("id", "text"), *fields))
    return f"json_to_recordset(%s::json) AS r({typed})"


# The columns of a new row that are not taken as sent.
_NEW_VALUES = {"input": "r.input::json", "request": "NULL", "revision": "1"}
_INSERT_EXECUTION = (
    f"INSERT INTO executions ({EXECUTION_COLUMNS}) SELECT "
    + ", ".join(_NEW_VALUES.get(name, f"r.{name}") for name in EXECUTION_COLUMNS.split(", "))
    + f" FROM {_recordset(_NEW_FIELDS)}"
)
# A change (or take) of a row: every column the checkpoint has, the revision grows.
_UPDATE_EXECUTION = (
    "UPDATE executions AS e SET "
    + ", ".join(f"{name} = r.{name}" for name, _ in _ROW_FIELDS if name != "vars")
    + ", vars = COALESCE(r.vars, e.vars), revision = e.revision + 1, "
    "request = CASE WHEN r.clear THEN NULL ELSE e.request END "
    f"FROM {_recordset((*_ROW_FIELDS, ('clear', 'boolean')))} WHERE e.id = r.id"
)
# In the order they are written: an execution's row before what hangs off it, and
# what a checkpoint removes before what it adds.
_STATEMENTS = (
    _INSERT_EXECUTION,
    _UPDATE_EXECUTION,
    # A step changes only the routing state of the row (Checkpoint's ``step``).
    "UPDATE executions AS e SET paths = r.paths, iteration_count = r.iteration_count, "
    "updated_at = r.updated_at FROM "
    + _recordset((("paths", "json"), ("iteration_count", "integer"), ("updated_at", "float8")))
    + " WHERE e.id = r.id",
    "INSERT INTO node_runs (execution_id, execution_index, record) "
    "SELECT r.id, r.execution_index, r.record FROM "
    + _recordset((("execution_index", "integer"), ("record", "json")))
    + " ON CONFLICT (execution_id, execution_index) DO UPDATE SET record = excluded.record",
    "DELETE FROM paths_blocks WHERE execution_id = %s AND number = %s",
    "INSERT INTO paths_blocks (execution_id, number, block) VALUES (%s, %s, %s) "
    "ON CONFLICT (execution_id, number) DO UPDATE SET block = excluded.block",
    "DELETE FROM node_context_fields WHERE execution_id = %s AND node_key = %s AND field = %s",
    "INSERT INTO node_context_fields (execution_id, node_key, field, value) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (execution_id, node_key, field) "
    "DO UPDATE SET value = excluded.value",
    "DELETE FROM suspensions WHERE execution_id = %s AND execution_index = %s",
    "INSERT INTO suspensions (execution_id, execution_index, token, wake_at, "
    "child_execution_id, record) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (execution_id, execution_index) DO UPDATE SET token = excluded.token, "
    "wake_at = excluded.wake_at, child_execution_id = excluded.child_execution_id, "
    "record = excluded.record",
)
(
    _NEW, _CHANGED, _STEPS, _RUNS, _BLOCK_DROPS, _BLOCKS, _FIELD_DROPS, _FIELDS, _WAIT_DROPS,
    _WAITS,
) = range(len(_STATEMENTS))  # fmt: skip
# The statements of the rows nearly every checkpoint writes (the execution's row, its
# routing state, its runs) take the batch's rows as one JSON array
# (``json_to_recordset``), encoded in one call, rather than a row at a time through
# the driver (``executemany``): the driver's Python layer per row was the store's
# largest cost on the engine's interpreter (W4 on PostgreSQL: +12-20% for the steps
# and runs, +4% more for the execution rows, measured interleaved). The rest (waits,
# contexts, routing blocks) are rare enough to keep ``executemany``.
_AS_ONE_ARRAY = (_NEW, _CHANGED, _STEPS, _RUNS)


class Writes:
    """The rows a batch of checkpoints writes, gathered by statement, so that each
    statement goes out once for the whole batch (``executemany``, or one JSON array of
    rows) rather than once per checkpoint. Two checkpoints of one execution are written
    one after the other (:meth:`add` writes what it holds first)."""

    def __init__(self, db: Connection) -> None:
        self._db = db
        self._rows: list[list[Any]] = [[] for _ in _STATEMENTS]
        self._executions: set[str] = set()

    def add(
        self,
        checkpoint: Checkpoint,
        row: Sequence[Any] | None,
        owner: str,
        lease_expires: float,
        now: float,
    ) -> None:
        """Gather what applying ``checkpoint`` to the execution's ``row`` writes."""
        execution_id = checkpoint.execution_id
        if execution_id in self._executions:
            self.write()
        self._executions.add(execution_id)
        rows = self._rows
        if row is not None and checkpoint.kind == "step":
            step = {
                "id": execution_id,
                "paths": dict(checkpoint.active_paths),
                "iteration_count": checkpoint.iteration_count,
                "updated_at": now,
            }
            rows[_STEPS].append(step)
        else:
            self._row(checkpoint, row, owner, lease_expires, now)
        rows[_RUNS] += [
            {"id": execution_id, "execution_index": run.execution_index, "record": run}
            for run in checkpoint.runs
        ]
        for number, block in checkpoint.paths_blocks.items():
            if block is None:
                rows[_BLOCK_DROPS].append((execution_id, number))
            else:
                rows[_BLOCKS].append((execution_id, number, codec.dumps(block)))
        rows[_FIELD_DROPS] += [
            (execution_id, key, field)
            for key, gone in checkpoint.node_context_drops.items()
            for field in gone
        ]
        rows[_FIELDS] += [
            (execution_id, key, field, codec.dumps(value))
            for key, changed in checkpoint.node_contexts.items()
            for field, value in changed.items()
        ]
        rows[_WAIT_DROPS] += [(execution_id, index) for index in checkpoint.suspensions_removed]
        rows[_WAITS] += [
            (
                execution_id, s.execution_index, s.token, s.wake_at, s.child_execution_id,
                codec.dumps(s),
            )
            for s in checkpoint.suspensions_added
        ]  # fmt: skip

    def _row(
        self,
        checkpoint: Checkpoint,
        row: Sequence[Any] | None,
        owner: str,
        lease_expires: float,
        now: float,
    ) -> None:
        """The execution's row, new or changed (not a step's: see :meth:`add`)."""
        running = checkpoint.status == "running"
        fields = {
            "id": checkpoint.execution_id,
            "workflow_id": checkpoint.workflow_id,
            "workflow_version": checkpoint.workflow_version,
            "workflow_hash": checkpoint.workflow_hash,
            "trigger": checkpoint.trigger,
            "status": checkpoint.status,
            "paths": dict(checkpoint.active_paths),
            "iteration_count": checkpoint.iteration_count,
            "error": checkpoint.error,
            "started_at": checkpoint.started_at,
            "finished_at": checkpoint.finished_at,
            "updated_at": now,
            "parent_execution_id": checkpoint.parent_execution_id,
            "root_execution_id": checkpoint.root_execution_id,
            "owner": owner if running else None,
            "mode": checkpoint.mode,
            "depth": checkpoint.depth,
            "deadline": checkpoint.deadline,
            "vars": None if checkpoint.vars is None else dict(checkpoint.vars),
            "lease_expires": lease_expires if running else None,
        }
        if row is None:
            key, limit, priority = place_columns(checkpoint.queue)
            fields.update(
                vars=fields["vars"] or {},
                input=codec.dumps(checkpoint.input),
                concurrency_key=key,
                concurrency_limit=limit,
                priority=priority,
            )
            self._rows[_NEW].append(fields)
        else:
            fields["clear"] = checkpoint.kind == "take" or checkpoint.clear_request
            self._rows[_CHANGED].append(fields)

    def write(self) -> None:
        """Send what is gathered, each statement once, and start gathering anew."""
        with self._db.cursor() as cursor:
            for number, (statement, rows) in enumerate(zip(_STATEMENTS, self._rows, strict=True)):
                if not rows:
                    continue
                if number in _AS_ONE_ARRAY:
                    cursor.execute(statement, (codec.dumps(rows),))
                else:
                    cursor.executemany(statement, rows)
                rows.clear()
        self._executions.clear()


def insert_workflow(db: Connection, workflow: StoredWorkflow) -> None:
    db.execute(
        "INSERT INTO workflows (hash, id, version, definition, created_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (hash) DO NOTHING",
        (
            workflow.hash,
            workflow.id,
            workflow.version,
            codec.dumps(dict(workflow.definition)),
            workflow.created_at,
        ),
    )


def workflow_from_row(row: Sequence[Any]) -> StoredWorkflow:
    return StoredWorkflow(
        hash=row[0], id=row[1], version=row[2], definition=codec.loads(row[3]), created_at=row[4]
    )


def schedule_from_row(row: Sequence[Any]) -> ScheduleState:
    spec, next_at, pending_at, paused = row
    return ScheduleState(next_at=next_at, pending_at=pending_at, spec=spec, paused=paused)


def suspensions_of(db: Connection, ids: list[str]) -> dict[str, tuple[Suspension, ...]]:
    """The waits of the executions ``ids``, by execution, in execution-index order."""
    if not ids:
        return {}
    rows = db.execute(
        "SELECT execution_id, record::text FROM suspensions WHERE execution_id = ANY(%s) "
        "ORDER BY execution_id, execution_index",
        (ids,),
    ).fetchall()
    found: dict[str, list[Suspension]] = {}
    for execution_id, record in rows:
        found.setdefault(execution_id, []).append(codec.structure(codec.loads(record), Suspension))
    return {execution_id: tuple(waits) for execution_id, waits in found.items()}


def execution_from_row(
    row: Sequence[Any],
    *,
    runs: tuple[NodeRun, ...] = (),
    suspensions: tuple[Suspension, ...] = (),
    blocks: Mapping[int, Any] | None = None,
    contexts: Mapping[str, Mapping[str, Any]] | None = None,
) -> StoredExecution:
    (
        execution_id, workflow_id, workflow_version, workflow_hash, trigger, status, input_,
        vars_, paths, iteration_count, error, started_at, finished_at, updated_at,
        parent_execution_id, root_execution_id, owner, lease_expires, mode, depth, deadline,
        request, revision, key, limit, priority,
    ) = row  # fmt: skip
    return StoredExecution(
        id=execution_id,
        workflow_id=workflow_id,
        workflow_version=workflow_version,
        workflow_hash=workflow_hash,
        trigger=trigger,
        status=status,
        input=codec.loads(input_),
        vars=codec.loads(vars_),
        node_contexts=contexts or {},
        active_paths=codec.loads(paths),
        paths_blocks=blocks or {},
        iteration_count=iteration_count,
        error=codec.loads_error(error),
        started_at=started_at,
        finished_at=finished_at,
        updated_at=updated_at,
        parent_execution_id=parent_execution_id,
        root_execution_id=root_execution_id,
        owner=owner,
        lease_expires=lease_expires,
        runs=runs,
        suspensions=suspensions,
        mode=mode,
        depth=depth,
        deadline=deadline,
        request=codec.loads(request),
        revision=revision,
        queue=place_of(key, limit, priority),
    )


# The first statement of a read of several statements: they see one state of the
# database (in PostgreSQL's default, each sees what was committed before it began).
ONE_STATE = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


def listed_executions(
    db: Connection, clause: str, values: Sequence[Any], limit: int
) -> list[StoredExecution]:
    """The executions ``clause`` chooses, newest first, with their waits (as they
    were when the executions were read: it begins its transaction, ``ONE_STATE``)."""
    db.execute(ONE_STATE)
    rows = db.execute(
        f"SELECT {TEXT_COLUMNS} FROM executions {clause} "
        "ORDER BY COALESCE(started_at, 0) DESC, id DESC LIMIT %s",
        (*values, limit),
    ).fetchall()
    waits = suspensions_of(db, [row[0] for row in rows])
    return [execution_from_row(row, suspensions=waits.get(row[0], ())) for row in rows]


def read_execution(
    db: Connection, execution_id: str, wanted: RunsSelector | None = None
) -> StoredExecution | None:
    """Everything kept of an execution, in one round trip; ``None`` if there is none.
    With ``wanted``, of its runs only those it asks for (more round trips, in the
    same transaction).

    It begins its transaction (``ONE_STATE``): a commit of another engine between
    two of its queries (an execution moving on from a wait) would otherwise mix two
    states, a waiting status without its wait, which cannot be restored."""
    key = (execution_id,)
    with db.pipeline():  # the queries in one round trip
        db.execute(ONE_STATE)
        row = db.execute(f"SELECT {TEXT_COLUMNS} FROM executions WHERE id = %s", key)
        runs = None if wanted is not None else db.execute(_ALL_RUNS, key)
        blocks = db.execute(
            "SELECT number, block::text FROM paths_blocks WHERE execution_id = %s", key
        )
        fields = db.execute(
            "SELECT node_key, field, value::text FROM node_context_fields "
            "WHERE execution_id = %s ORDER BY node_key, field",
            key,
        )
        waits = db.execute(
            "SELECT record::text FROM suspensions WHERE execution_id = %s ORDER BY execution_index",
            key,
        )
    found = row.fetchone()
    if found is None:
        return None
    contexts: dict[str, dict[str, Any]] = {}
    for node_key, field, value in fields.fetchall():
        contexts.setdefault(node_key, {})[field] = codec.loads(value)
    stored = execution_from_row(
        found,
        suspensions=tuple(codec.structure(codec.loads(w[0]), Suspension) for w in waits.fetchall()),
        blocks={number: codec.loads(block) for number, block in blocks.fetchall()},
        contexts=contexts,
    )
    selection = None if wanted is None else wanted(stored)
    if selection is not None:
        return attrs.evolve(stored, runs=_wanted_runs(db, execution_id, selection), all_runs=False)
    records = (runs if runs is not None else db.execute(_ALL_RUNS, key)).fetchall()
    return attrs.evolve(
        stored, runs=tuple(codec.structure(codec.loads(r[0]), NodeRun) for r in records)
    )


_ALL_RUNS = "SELECT record::text FROM node_runs WHERE execution_id = %s ORDER BY execution_index"
# Each node's latest ended run, and its latest completed one (one pass).
_LATEST_RUNS = (
    "SELECT max(CASE WHEN record->>'status' IN ('completed', 'failed') THEN execution_index END), "
    "max(CASE WHEN record->>'status' = 'completed' THEN execution_index END) FROM node_runs "
    "WHERE execution_id = %s GROUP BY record->>'node_key'"
)


def _wanted_runs(db: Connection, execution_id: str, wanted: RunsWanted) -> tuple[NodeRun, ...]:
    """The runs ``wanted`` asks for, in execution index order."""
    found: dict[int, NodeRun] = {}

    def take(condition: str, *values: Any) -> None:
        for (record,) in db.execute(
            f"SELECT record::text FROM node_runs WHERE execution_id = %s AND {condition}",
            (execution_id, *values),
        ):
            run = codec.structure(codec.loads(record), NodeRun)
            found[run.execution_index] = run

    def take_indexes(indexes: set[int]) -> None:
        chosen = sorted(indexes - found.keys())
        if chosen:
            take("execution_index = ANY(%s)", chosen)

    take("execution_index >= %s", wanted.newest_from)
    for node_key, run_index in wanted.runs_of:
        take("record->>'node_key' = %s AND (record->>'run_index')::int = %s", node_key, run_index)
    for node_key, run_index in wanted.collecting:
        take("record->>'node_key' = %s AND (record->>'run_index')::int > %s", node_key, run_index)
    latest: set[int] = set()
    if wanted.find_latest:
        latest = {i for pair in db.execute(_LATEST_RUNS, (execution_id,)) for i in pair} - {None}
    take_indexes(latest | wanted.indexes)
    # The runs their inputs came from (a retry of one delivers them again).
    take_indexes({source for run in found.values() for _, source in run.inputs})
    return tuple(found[index] for index in sorted(found))
