"""Rows of the SQLite store: applying checkpoints (reading them back is in
:mod:`._sqlite_reads`, node runs in :mod:`._sqlite_runs`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import attrs

from prana._records import Checkpoint

from . import _codec as codec
from ._protocol import ScheduleState
from ._queue import place_columns
from ._schema import STATE_ROW
from ._sqlite_reads import SUSPENSION_COLUMNS
from ._sqlite_runs import (
    OUTPUT,
    RUN_COLUMNS,
    RUN_VALUES,
    insert_runs,
    is_long,
    run_values,
)

EXECUTION_COLUMNS = (
    "id, workflow_id, workflow_version, workflow_hash, trigger, status, input, vars, paths, "
    "iteration_count, error, started_at, finished_at, updated_at, parent_execution_id, "
    "root_execution_id, owner, lease_expires, mode, depth, deadline, request, revision, "
    "concurrency_key, concurrency_limit, priority"
)
_INSERT_EXECUTION = (
    f"INSERT INTO executions ({EXECUTION_COLUMNS}) VALUES ({', '.join('?' * 26)}) "
    "ON CONFLICT (id) DO NOTHING"
)
_STATE_COLUMNS = "execution_id, execution_index, node_key, run_index, attempt, status, output"
_STATE_UPSERT = (
    "ON CONFLICT (execution_id, execution_index) DO UPDATE SET run_index = excluded.run_index, "
    "output = excluded.output, finished_at = excluded.finished_at"
)
# Routing state, iteration count, time: after a change to the execution's row.
_SAVE_STATE = (
    f"INSERT INTO node_executions ({_STATE_COLUMNS}, finished_at) "
    f"VALUES (?, {STATE_ROW}, '', ?, 0, 'state', ?, ?) {_STATE_UPSERT}"
)


# The state row of a plain step, if the engine owns the execution (one lookup by
# primary key): ``rowcount`` then says whether every step of a batch was ours.
_SAVE_STATE_IF_OWNED = (
    f"INSERT INTO node_executions ({_STATE_COLUMNS}, finished_at) "
    f"SELECT ?1, {STATE_ROW}, '', ?2, 0, 'state', ?3, ?4 "
    "WHERE EXISTS (SELECT 1 FROM executions WHERE id = ?1 AND owner = ?5) "
    f"{_STATE_UPSERT}"
)
# The commonest step, one node run, as one statement (so as one transaction of its
# own): the run, the state and the blocks of a large routing state it changed (up to
# ONE_STATEMENT_BLOCKS), if the engine owns the execution. The state row and the
# blocks are the only rows that may already exist; a run is never written twice.
ONE_STATEMENT_BLOCKS = 3
_STATE_VALUES = (
    f"(?, {STATE_ROW}, '', ?, 0, 'state', NULL, ?, NULL, NULL, NULL, ?, NULL, NULL, NULL)"
)
_BLOCK_VALUES = "(?, ?, '', 0, 0, 'state', NULL, ?, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
_SAVE_ONE_RUN_STEP = [
    f"INSERT INTO node_executions (execution_id, {RUN_COLUMNS}) "
    f"SELECT * FROM (VALUES ({RUN_VALUES}), {', '.join([_STATE_VALUES] + [_BLOCK_VALUES] * blocks)}) "
    "WHERE EXISTS (SELECT 1 FROM executions WHERE id = ? AND owner = ?) "
    f"{_STATE_UPSERT} WHERE excluded.execution_index >= {STATE_ROW}"
    for blocks in range(ONE_STATEMENT_BLOCKS + 1)
]
_INSERT_SUSPENSION = (
    f"INSERT INTO suspensions ({SUSPENSION_COLUMNS}) VALUES ({', '.join('?' * 14)})"
)


def is_one_run_step(checkpoint: Checkpoint) -> bool:
    """Whether ``checkpoint`` is a step that adds one node run and changes nothing
    else but a few blocks of the routing state: :func:`save_one_run_step` saves it
    in one statement."""
    blocks = checkpoint.paths_blocks
    return (
        len(checkpoint.runs) == 1
        and is_plain_step(checkpoint, blocks=True)
        and len(blocks) <= ONE_STATEMENT_BLOCKS
        and None not in blocks.values()
    )


def save_one_run_step(
    db: sqlite3.Connection,
    checkpoint: Checkpoint,
    run: tuple[Any, ...],
    owner: str,
    now: float,
) -> set[str]:
    """Save a checkpoint of :func:`is_one_run_step`, whose run's values are ``run``
    (an output kept in its row), in one statement (in autocommit mode, one
    transaction); return its execution's id if this engine does not own it (nothing
    is saved), or nothing."""
    execution_id = checkpoint.execution_id
    blocks = checkpoint.paths_blocks
    cursor = db.execute(
        _SAVE_ONE_RUN_STEP[len(blocks)],
        (
            *run,
            execution_id,
            checkpoint.iteration_count,
            codec.dumps(checkpoint.active_paths),
            now,
            *(
                value
                for number, block in blocks.items()
                for value in (execution_id, STATE_ROW + 1 + number, codec.dumps(block))
            ),
            execution_id,
            owner,
        ),
    )
    return set() if cursor.rowcount > 0 else {execution_id}


def is_plain_step(checkpoint: Checkpoint, *, blocks: bool = False) -> bool:
    """Whether ``checkpoint`` is a step that changes nothing but node runs and the
    routing state (with ``blocks``, its blocks too): :func:`save_steps` saves it
    whole, without its blocks."""
    return (
        checkpoint.kind == "step"
        and not checkpoint.node_contexts
        and not checkpoint.node_context_drops
        and not checkpoint.suspensions_added
        and not checkpoint.suspensions_removed
        and (blocks or not checkpoint.paths_blocks)
    )


def save_steps(
    db: sqlite3.Connection,
    steps: Sequence[Checkpoint],
    owner: str,
    now: float,
    runs: Mapping[str, list[tuple[Any, ...]]] | None = None,
) -> set[str]:
    """Save the node runs and routing state of ``steps`` (checkpoints of kind
    ``step``) in the open transaction; return the ids of those not saved
    because this engine does not own them.

    Two statements run once per row each (``executemany``), with nothing but the
    values built in Python: on the loop's thread that is the cheapest way SQLite
    takes a batch (decision 0027). ``runs``: the values of the steps' runs by
    execution (:func:`encoded_runs`), if made already.
    """
    cursor = db.executemany(
        _SAVE_STATE_IF_OWNED,
        [
            (
                checkpoint.execution_id,
                checkpoint.iteration_count,
                codec.dumps(checkpoint.active_paths),
                now,
                owner,
            )
            for checkpoint in steps
        ],
    )
    lost: set[str] = set()
    if cursor.rowcount != len(steps):
        ids = [checkpoint.execution_id for checkpoint in steps]
        owned = _owned(db, ids, owner)
        lost = {execution_id for execution_id in ids if execution_id not in owned}
    insert_runs(db, [step for step in steps if step.execution_id not in lost], runs)
    return lost


def apply_checkpoints(
    db: sqlite3.Connection,
    checkpoints: Sequence[Checkpoint],
    owner: str,
    lease_expires: float,
    now: float,
    runs: Mapping[str, list[tuple[Any, ...]]] | None = None,
) -> set[str]:
    """Apply ``checkpoints`` (at most one per execution) in the open transaction;
    return the ids of those not applied because this engine does not own them.
    ``runs``: as for :func:`save_steps`.

    Plain steps of running executions, most of any batch, are applied together
    (:func:`save_steps`). They leave the execution's row alone: its lease is renewed
    by the engine's heartbeat.
    """
    lost: set[str] = set()
    steps: list[Checkpoint] = []
    others: list[Checkpoint] = []
    for checkpoint in checkpoints:
        if checkpoint.kind == "step":
            steps.append(checkpoint)
        elif _apply_header(db, checkpoint, owner, lease_expires, now):
            others.append(checkpoint)
        else:
            lost.add(checkpoint.execution_id)
    applied = list(others)
    if steps:
        lost |= save_steps(db, steps, owner, now, runs)
        applied += (checkpoint for checkpoint in steps if checkpoint.execution_id not in lost)
    insert_runs(db, others, runs)
    for checkpoint in applied:
        _apply_details(db, checkpoint)
    return lost


@attrs.frozen
class Saving:
    """How to save a batch of checkpoints (:func:`saving`)."""

    save: Callable[[sqlite3.Connection], set[str]]  # returns the ids not ours
    transaction: bool  # whether it needs a transaction around it
    size: int  # bytes of the outputs it writes


def saving(
    checkpoints: Sequence[Checkpoint], owner: str, lease_expires: float, now: float
) -> Saving:
    """How to save ``checkpoints``. Their runs' values are made here, once, however
    many times the save is tried."""
    runs = {
        checkpoint.execution_id: [
            run_values(checkpoint.execution_id, run) for run in checkpoint.runs
        ]
        for checkpoint in checkpoints
        if checkpoint.runs
    }
    size = sum(len(run[OUTPUT]) for values in runs.values() for run in values)
    if len(checkpoints) == 1 and is_one_run_step(checkpoints[0]):
        # The commonest checkpoint of a lone execution: one statement, so a
        # transaction of its own, without BEGIN and COMMIT; two if its output is
        # kept apart.
        checkpoint = checkpoints[0]
        (run,) = runs[checkpoint.execution_id]
        if not is_long(run[OUTPUT]):
            one = partial(save_one_run_step, checkpoint=checkpoint, run=run, owner=owner, now=now)
            return Saving(one, False, size)
    if all(is_plain_step(checkpoint) for checkpoint in checkpoints):
        return Saving(
            partial(save_steps, steps=checkpoints, owner=owner, now=now, runs=runs), True, size
        )
    save = partial(
        apply_checkpoints,
        checkpoints=checkpoints,
        owner=owner,
        lease_expires=lease_expires,
        now=now,
        runs=runs,
    )
    return Saving(save, True, size)


def chunks(ids: list[str], size: int = 500) -> Iterator[list[str]]:
    """``ids`` in lists short enough for SQLite's limit on variables."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _owned(db: sqlite3.Connection, execution_ids: list[str], owner: str) -> set[str]:
    owned: set[str] = set()
    for chunk in chunks(execution_ids):
        rows = db.execute(
            f"SELECT id FROM executions WHERE owner = ? AND id IN ({', '.join('?' * len(chunk))})",
            (owner, *chunk),
        )
        owned.update(row[0] for row in rows)
    return owned


def _apply_header(
    db: sqlite3.Connection, checkpoint: Checkpoint, owner: str, lease_expires: float, now: float
) -> bool:
    """Create or update the execution's row and its state row; ``False`` if it is not
    ours to change."""
    if not _apply_execution_row(db, checkpoint, owner, lease_expires, now):
        return False
    db.execute(
        _SAVE_STATE,
        (
            checkpoint.execution_id,
            checkpoint.iteration_count,
            codec.dumps(checkpoint.active_paths),
            now,
        ),
    )
    return True


def _apply_execution_row(
    db: sqlite3.Connection, checkpoint: Checkpoint, owner: str, lease_expires: float, now: float
) -> bool:
    running = checkpoint.status == "running"
    take = checkpoint.kind == "take"
    clear = take or checkpoint.clear_request
    row_owner = owner if running else None
    row_lease = lease_expires if running else None
    error = codec.dumps_error(checkpoint.error)
    if checkpoint.kind == "start":
        cursor = db.execute(
            _INSERT_EXECUTION,
            (
                checkpoint.execution_id,
                checkpoint.workflow_id,
                checkpoint.workflow_version,
                checkpoint.workflow_hash,
                checkpoint.trigger,
                checkpoint.status,
                codec.dumps(checkpoint.input),
                codec.dumps(checkpoint.vars or {}),
                "{}",  # paths and iteration_count: kept in the state row since version 5
                0,
                error,
                checkpoint.started_at,
                checkpoint.finished_at,
                now,
                checkpoint.parent_execution_id,
                checkpoint.root_execution_id,
                row_owner,
                row_lease,
                checkpoint.mode,
                checkpoint.depth,
                checkpoint.deadline,
                None,
                1,
                *place_columns(checkpoint.queue),
            ),
        )
        # Not 1: started already, by this engine or another.
        return cursor.rowcount == 1
    if checkpoint.status_changed or take:
        assignments = (
            "status = ?, error = ?, started_at = ?, finished_at = ?, deadline = ?, "
            "updated_at = ?, owner = ?, lease_expires = ?"
        )
        values: list[Any] = [
            checkpoint.status,
            error,
            checkpoint.started_at,
            checkpoint.finished_at,
            checkpoint.deadline,
        ]
    else:
        # Leave the indexed status columns alone: SQLite rewrites an index
        # entry whenever its column is assigned, even to the same value.
        assignments = "updated_at = ?, owner = ?, lease_expires = ?"
        values = []
    values += [now, row_owner, row_lease]
    if checkpoint.vars is not None:
        assignments += ", vars = ?"
        values.append(codec.dumps(checkpoint.vars))
    if clear:
        assignments += ", request = NULL"
    assignments += ", revision = revision + 1"
    if take:
        # Take a waiting execution that no live engine owns, in this same step, if
        # nobody has changed it since it was loaded.
        cursor = db.execute(
            f"UPDATE executions SET {assignments} WHERE id = ? AND status = ? "
            "AND revision = ? AND (owner IS NULL OR owner = ? OR lease_expires <= ?)",
            (
                *values,
                checkpoint.execution_id,
                checkpoint.take_from,
                checkpoint.revision,
                owner,
                now,
            ),
        )
    else:
        cursor = db.execute(
            f"UPDATE executions SET {assignments} WHERE id = ? AND owner = ?",
            (*values, checkpoint.execution_id, owner),
        )
    return cursor.rowcount == 1


def _apply_details(db: sqlite3.Connection, checkpoint: Checkpoint) -> None:
    """Node contexts, blocks of the routing state and suspensions of an applied
    checkpoint."""
    execution_id = checkpoint.execution_id
    if checkpoint.paths_blocks:
        _save_blocks(db, execution_id, checkpoint.paths_blocks)
    if checkpoint.node_contexts:
        db.executemany(
            "INSERT OR REPLACE INTO node_context_fields (execution_id, node_key, field, value) "
            "VALUES (?, ?, ?, ?)",
            [
                (execution_id, key, field, codec.dumps(value))
                for key, fields in checkpoint.node_contexts.items()
                for field, value in fields.items()
            ],
        )
    if checkpoint.node_context_drops:
        db.executemany(
            "DELETE FROM node_context_fields WHERE execution_id = ? AND node_key = ? AND field = ?",
            [
                (execution_id, key, field)
                for key, fields in checkpoint.node_context_drops.items()
                for field in fields
            ],
        )
    if checkpoint.suspensions_removed:
        db.executemany(
            "DELETE FROM suspensions WHERE execution_id = ? AND execution_index = ?",
            [(execution_id, index) for index in checkpoint.suspensions_removed],
        )
    if checkpoint.suspensions_added:
        db.executemany(
            _INSERT_SUSPENSION,
            [
                (
                    s.execution_id,
                    s.execution_index,
                    s.node_key,
                    s.run_index,
                    s.kind,
                    s.token,
                    s.wake_at,
                    s.wake_port,
                    codec.dumps(s.wake_data),
                    s.resume_port,
                    s.started_at,
                    s.child_execution_id,
                    codec.dumps(s.data),
                    codec.dumps(s.params),
                )
                for s in checkpoint.suspensions_added
            ],
        )


def _save_blocks(db: sqlite3.Connection, execution_id: str, blocks: Mapping[int, Any]) -> None:
    """Blocks of a large routing state, each a row after the state row (block ``k``
    at execution index ``STATE_ROW + 1 + k``); ``None`` drops one."""
    kept = [(number, block) for number, block in blocks.items() if block is not None]
    if kept:
        db.executemany(
            f"INSERT OR REPLACE INTO node_executions ({_STATE_COLUMNS}) "
            "VALUES (?, ?, '', 0, 0, 'state', ?)",
            [(execution_id, STATE_ROW + 1 + number, codec.dumps(block)) for number, block in kept],
        )
    if len(kept) < len(blocks):
        db.executemany(
            "DELETE FROM node_executions WHERE execution_id = ? AND execution_index = ?",
            [
                (execution_id, STATE_ROW + 1 + number)
                for number, block in blocks.items()
                if block is None
            ],
        )


def arm_schedule(
    db: sqlite3.Connection,
    workflow_id: str,
    trigger: str,
    spec: str,
    first_at: float,
    replace: bool = True,
) -> ScheduleState:
    """The schedule's row, made anew if it is missing or (with ``replace``) its spec
    changed."""
    row = db.execute(
        "SELECT spec, next_at, pending_at, paused FROM schedules "
        "WHERE workflow_id = ? AND trigger = ?",
        (workflow_id, trigger),
    ).fetchone()
    if row is not None and (row[0] == spec or not replace):
        return ScheduleState(next_at=row[1], pending_at=row[2], spec=row[0], paused=bool(row[3]))
    pending_at = row[2] if row is not None else None
    paused = bool(row[3]) if row is not None else False
    db.execute(
        "INSERT INTO schedules (workflow_id, trigger, spec, next_at, pending_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workflow_id, trigger) "
        "DO UPDATE SET spec = excluded.spec, next_at = excluded.next_at",
        (workflow_id, trigger, spec, first_at, pending_at),
    )
    return ScheduleState(next_at=first_at, pending_at=pending_at, spec=spec, paused=paused)


def advance_schedule(
    db: sqlite3.Connection,
    workflow_id: str,
    trigger: str,
    due_at: float,
    next_at: float,
    pending_at: float,
    spec: str | None = None,
) -> bool:
    """Move the schedule past ``due_at`` if nobody did yet (and it follows ``spec``)."""
    cursor = db.execute(
        "UPDATE schedules SET next_at = ?, pending_at = ? "
        "WHERE workflow_id = ? AND trigger = ? AND next_at = ? AND (? IS NULL OR spec = ?)",
        (next_at, pending_at, workflow_id, trigger, due_at, spec, spec),
    )
    return cursor.rowcount == 1
