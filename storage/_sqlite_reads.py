"""Rows of the SQLite store back into records: an execution as stored, with its runs,
contexts, waits and the blocks of its routing state."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import attrs

from prana._records import NodeRun, StoredExecution, Suspension
from prana._wanted import RunsSelector, RunsWanted

from . import _codec as codec
from ._queue import place_of
from ._schema import STATE_ROW
from ._sqlite_runs import OUTPUT_ID, RUN_COLUMNS, outputs_apart, run_from_row

SUSPENSION_COLUMNS = (
    "execution_id, execution_index, node_key, run_index, kind, token, wake_at, wake_port, "
    "wake_data, resume_port, started_at, child_execution_id, data, params"
)


# An execution's row with its state row's routing state, iteration count and time of
# the last checkpoint, in the order of EXECUTION_COLUMNS.
SELECT_EXECUTION = (
    "SELECT e.id, e.workflow_id, e.workflow_version, e.workflow_hash, e.trigger, e.status, "
    "e.input, e.vars, coalesce(s.output, e.paths), coalesce(s.run_index, e.iteration_count), "
    "e.error, e.started_at, e.finished_at, coalesce(s.finished_at, e.updated_at), "
    "e.parent_execution_id, e.root_execution_id, e.owner, e.lease_expires, e.mode, e.depth, "
    "e.deadline, e.request, e.revision, e.concurrency_key, e.concurrency_limit, e.priority "
    "FROM executions e LEFT JOIN node_executions s "
    f"ON s.execution_id = e.id AND s.execution_index = {STATE_ROW}"
)


def suspension_from_row(row: Sequence[Any]) -> Suspension:
    return Suspension(
        execution_id=row[0],
        execution_index=row[1],
        node_key=row[2],
        run_index=row[3],
        kind=row[4],
        token=row[5],
        wake_at=row[6],
        wake_port=row[7],
        wake_data=codec.loads(row[8]),
        resume_port=row[9],
        started_at=row[10],
        child_execution_id=row[11],
        data=codec.loads(row[12]),
        params=codec.loads(row[13]),
    )


def execution_from_row(
    row: Sequence[Any],
    *,
    runs: tuple[NodeRun, ...] = (),
    contexts: dict[str, Any] | None = None,
    suspensions: tuple[Suspension, ...] = (),
    paths_blocks: dict[int, Any] | None = None,
) -> StoredExecution:
    return StoredExecution(
        id=row[0],
        workflow_id=row[1],
        workflow_version=row[2],
        workflow_hash=row[3],
        trigger=row[4],
        status=row[5],
        input=codec.loads(row[6]),
        vars=codec.loads(row[7]) or {},
        active_paths=codec.loads(row[8]) or {},
        iteration_count=row[9],
        error=codec.loads_error(row[10]),
        started_at=row[11],
        finished_at=row[12],
        updated_at=row[13],
        parent_execution_id=row[14],
        root_execution_id=row[15],
        owner=row[16],
        lease_expires=row[17],
        mode=row[18],
        depth=row[19],
        deadline=row[20],
        request=codec.loads(row[21]),
        revision=row[22],
        queue=place_of(row[23], row[24], row[25]),
        node_contexts=contexts or {},
        paths_blocks=paths_blocks or {},
        runs=runs,
        suspensions=suspensions,
    )


def load_execution(
    db: sqlite3.Connection, execution_id: str, wanted: RunsSelector | None = None
) -> StoredExecution | None:
    """Everything kept of an execution, or ``None``; with ``wanted``, only the runs it
    asks for (see :data:`prana._wanted.RunsSelector`)."""
    row = db.execute(f"{SELECT_EXECUTION} WHERE e.id = ?", (execution_id,)).fetchone()
    if row is None:
        return None
    # The blocks of a large routing state are rows past the state row.
    blocks = {
        index - STATE_ROW - 1: codec.loads(block)
        for index, block in db.execute(
            "SELECT execution_index, output FROM node_executions "
            "WHERE execution_id = ? AND execution_index > ?",
            (execution_id, STATE_ROW),
        )
    }
    contexts: dict[str, dict[str, Any]] = {}
    for key, field, value in db.execute(
        "SELECT node_key, field, value FROM node_context_fields WHERE execution_id = ?",
        (execution_id,),
    ):
        contexts.setdefault(key, {})[field] = codec.loads(value)
    suspensions = tuple(
        suspension_from_row(suspension)
        for suspension in db.execute(
            f"SELECT {SUSPENSION_COLUMNS} FROM suspensions WHERE execution_id = ? "
            "ORDER BY execution_index",
            (execution_id,),
        )
    )
    stored = execution_from_row(
        row, contexts=contexts, suspensions=suspensions, paths_blocks=blocks
    )
    selection = None if wanted is None else wanted(stored)
    if selection is None:
        run_rows = db.execute(f"{_SELECT_RUNS} ORDER BY execution_index", (execution_id,))
        return attrs.evolve(stored, runs=_runs(db, list(run_rows)))
    rows = _wanted_rows(db, execution_id, selection)
    return attrs.evolve(stored, runs=_runs(db, rows), all_runs=False)


_SELECT_RUNS = (
    f"SELECT {RUN_COLUMNS} FROM node_executions "
    f"WHERE execution_id = ? AND execution_index < {STATE_ROW}"
)
# Each node's latest ended run, and its latest completed one (one pass).
_LATEST_RUNS = (
    "SELECT max(CASE WHEN status IN ('completed', 'failed') THEN execution_index END), "
    "max(CASE WHEN status = 'completed' THEN execution_index END) FROM node_executions "
    f"WHERE execution_id = ? AND execution_index < {STATE_ROW} GROUP BY node_key"
)


def _runs(db: sqlite3.Connection, rows: list[Sequence[Any]]) -> tuple[NodeRun, ...]:
    apart = outputs_apart(db, [run[OUTPUT_ID] for run in rows if run[OUTPUT_ID] is not None])
    return tuple(run_from_row(run, apart.get(run[OUTPUT_ID])) for run in rows)


def _wanted_rows(
    db: sqlite3.Connection, execution_id: str, wanted: RunsWanted
) -> list[Sequence[Any]]:
    """The rows of the runs ``wanted`` asks for, in execution index order."""
    found: dict[int, Sequence[Any]] = {}

    def take(condition: str, *values: Any) -> None:
        for run in db.execute(f"{_SELECT_RUNS} AND {condition}", (execution_id, *values)):
            found[run[0]] = run

    def take_indexes(indexes: set[int]) -> None:
        chosen = sorted(indexes - found.keys())
        for start in range(0, len(chosen), 500):
            chunk = chosen[start : start + 500]
            take(f"execution_index IN ({', '.join('?' * len(chunk))})", *chunk)

    take("execution_index >= ?", wanted.newest_from)
    for node_key, run_index in wanted.runs_of:
        take("node_key = ? AND run_index = ?", node_key, run_index)
    for node_key, run_index in wanted.collecting:
        take("node_key = ? AND run_index > ?", node_key, run_index)
    latest: set[int] = set()
    if wanted.find_latest:
        latest = {i for pair in db.execute(_LATEST_RUNS, (execution_id,)) for i in pair} - {None}
    take_indexes(latest | wanted.indexes)
    # The runs their inputs came from (a retry of one delivers them again).
    take_indexes({source for run in found.values() for _, source in codec.loads(run[8]) or ()})
    return [found[index] for index in sorted(found)]
