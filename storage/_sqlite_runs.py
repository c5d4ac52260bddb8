"""Rows of node runs in the SQLite store: a run's values, an output kept apart,
and a row back to a :class:`NodeRun`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prana._records import Checkpoint, NodeRun

from . import _codec as codec

RUN_COLUMNS = (
    "execution_index, node_key, run_index, attempt, status, port, output, error, inputs, "
    "started_at, finished_at, duration_ms, params, output_id"
)
OUTPUT_ID = 13  # where a row of RUN_COLUMNS has its output's number
# A run's output longer than this (JSON text, in bytes) is kept in ``run_outputs``,
# by number, and its row keeps the number: a row of node_executions longer than about
# 1 KB would take an overflow page of its own, 4 KB for a 1 KB output (decision 0043).
INLINE_OUTPUT = 700
OUTPUT = 7  # where the output is in run_values
# The placeholders of a run's values (run_values: its execution's id, then
# RUN_COLUMNS). Its error, inputs and params, most often absent, and its output when
# kept apart, come as '' and are stored as NULL, and no output number as 0: Python's
# sqlite3 module binds None only after looking it up in its adapter registry, which
# costs more than the statement's nullif (JSON text is never empty).
RUN_VALUES = ", ".join(
    ["?"] * 7 + ["nullif(?, '')"] * 3 + ["?"] * 3 + ["nullif(?, '')", "nullif(?, 0)"]
)
INSERT_RUN = f"INSERT INTO node_executions (execution_id, {RUN_COLUMNS}) VALUES ({RUN_VALUES})"


def insert_runs(
    db: sqlite3.Connection,
    checkpoints: Iterable[Checkpoint],
    made: Mapping[str, list[tuple[Any, ...]]] | None = None,
) -> None:
    """Insert the runs of ``checkpoints``, whose values (by execution) may be
    ``made`` already."""
    insert_run_values(
        db,
        [
            values
            for checkpoint in checkpoints
            for values in (
                made[checkpoint.execution_id]
                if made is not None and checkpoint.execution_id in made
                else [run_values(checkpoint.execution_id, run) for run in checkpoint.runs]
            )
        ],
    )


def is_long(output: str | bytes) -> bool:
    """Whether an output (from :func:`run_values`) is kept in ``run_outputs``: a long
    one stays UTF-8 bytes, which the statement stores as text."""
    return type(output) is bytes


def insert_run_values(db: sqlite3.Connection, runs: Sequence[tuple[Any, ...]]) -> None:
    """Insert runs (their :func:`run_values`), a long output in ``run_outputs``."""
    if any(is_long(run[OUTPUT]) for run in runs):
        runs = [output_apart(db, run) if is_long(run[OUTPUT]) else run for run in runs]
    db.executemany(INSERT_RUN, runs)


def output_apart(db: sqlite3.Connection, run: tuple[Any, ...]) -> tuple[Any, ...]:
    """Keep ``run``'s output in ``run_outputs``; its values with the output's number."""
    number = db.execute(
        "INSERT INTO run_outputs (output) VALUES (CAST(? AS TEXT))", (run[OUTPUT],)
    ).lastrowid
    return (*run[:OUTPUT], "", *run[OUTPUT + 1 : -1], number)


def run_values(execution_id: str, run: NodeRun) -> tuple[Any, ...]:
    """The values of ``run``'s row, in the order of :data:`RUN_VALUES`."""
    return (
        execution_id,
        run.execution_index,
        run.node_key,
        run.run_index,
        run.attempt,
        run.status,
        run.port,
        codec.dumps_output(run.output, INLINE_OUTPUT),
        "" if run.error is None else codec.dumps_error(run.error),
        codec.dumps(run.inputs) if run.inputs else "",
        run.started_at,
        run.finished_at,
        run.duration_ms,
        "" if run.params is None else codec.dumps(run.params),
        0,  # the number of its output in run_outputs: none (see output_apart)
    )


def outputs_apart(db: sqlite3.Connection, numbers: list[int]) -> dict[int, str]:
    """The outputs kept in ``run_outputs`` under ``numbers``, as JSON text."""
    found: dict[int, str] = {}
    for start in range(0, len(numbers), 500):
        chunk = numbers[start : start + 500]
        found.update(
            db.execute(
                f"SELECT number, output FROM run_outputs WHERE number IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        )
    return found


def run_from_row(row: Sequence[Any], output: str | None = None) -> NodeRun:
    """A run from its row (:data:`RUN_COLUMNS`); ``output``: its output's JSON text,
    if kept apart."""
    inputs = codec.loads(row[8]) or ()
    return NodeRun(
        node_key=row[1],
        run_index=row[2],
        execution_index=row[0],
        attempt=row[3],
        status=row[4],
        port=row[5],
        output=codec.loads(row[6] if output is None else output),
        error=codec.loads_error(row[7]),
        inputs=tuple((port, source) for port, source in inputs),
        started_at=row[9],
        finished_at=row[10],
        duration_ms=row[11],
        params=codec.loads(row[12]),
    )
