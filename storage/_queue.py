"""The queue of executions waiting to start, for every store (``Store.claim_queued``).

An execution of a workflow with a concurrency key is saved ``queued`` with its place
(:class:`prana._records.QueuePlace`: key, limit, priority) and starts when an engine
claims it. A key's executions *in progress* are those running, waiting or paused,
and those queued that an engine has claimed and not started yet (its lease holds);
a claim takes, highest priority first and then oldest first, queued executions that
are not claimed and whose key has room: at most ``limit`` in progress, counting the
ones the claim takes. An execution without a key is limited by nothing but the
number asked for.

The SQL stores run :func:`claim_sql` in one transaction that no other claim runs
beside (SQLite: its write lock; PostgreSQL: an advisory lock), so that two engines
never both see room for the same key's last slot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from typing import Any

from prana._records import QueuePlace, StoredExecution

IN_PROGRESS = ("running", "suspended", "paused")
# What the queue adds to the executions table, the same in SQLite and PostgreSQL: a
# row's place (``concurrency_limit`` is NULL for an execution never queued).
QUEUE_SCHEMA = """
    ALTER TABLE executions ADD COLUMN concurrency_key TEXT;
    ALTER TABLE executions ADD COLUMN concurrency_limit INTEGER;
    ALTER TABLE executions ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX executions_queued ON executions (priority DESC, started_at, id)
        WHERE status = 'queued';
    CREATE INDEX executions_by_key ON executions (concurrency_key)
        WHERE concurrency_key IS NOT NULL
        AND status IN ('queued', 'running', 'suspended', 'paused');
    """


def place_of(key: str | None, limit: int | None, priority: int | None) -> QueuePlace | None:
    """The place kept in a row's columns (``limit`` is ``NULL`` for an execution that
    was never queued)."""
    if limit is None:
        return None
    return QueuePlace(key=key, limit=limit, priority=priority or 0)


def place_columns(place: QueuePlace | None) -> tuple[str | None, int | None, int]:
    """A place as the row's columns: key, limit, priority."""
    if place is None:
        return (None, None, 0)
    return (place.key, place.limit, place.priority)


def claim_sql(mark: str, skipped: str) -> str:
    """The ids a claim takes; ``mark`` is the driver's placeholder, ``skipped`` the
    condition on ``id`` that passes an execution by. Parameters: the time now (twice),
    what ``skipped`` takes, the most to take."""
    statuses = ", ".join(f"'{status}'" for status in IN_PROGRESS)
    return f"""
        WITH held AS (
            SELECT concurrency_key AS key, count(*) AS n FROM executions
            WHERE concurrency_key IS NOT NULL
              AND (status IN ({statuses})
                   OR (status = 'queued' AND owner IS NOT NULL AND lease_expires > {mark}))
            GROUP BY concurrency_key
        ), waiting AS (
            SELECT id, concurrency_key, concurrency_limit, priority, started_at,
                   row_number() OVER (
                       PARTITION BY concurrency_key ORDER BY priority DESC, started_at, id
                   ) AS place
            FROM executions
            WHERE status = 'queued' AND (owner IS NULL OR lease_expires <= {mark})
              AND NOT ({skipped})
        )
        SELECT w.id FROM waiting AS w LEFT JOIN held AS h ON h.key = w.concurrency_key
        WHERE w.concurrency_key IS NULL OR w.place + COALESCE(h.n, 0) <= w.concurrency_limit
        ORDER BY w.priority DESC, w.started_at, w.id
        LIMIT {mark}
    """


def choose(
    executions: Iterable[StoredExecution], now: float, limit: int, skip: Collection[str] = ()
) -> list[str]:
    """What a claim takes among ``executions`` (the memory store's :func:`claim_sql`),
    passing those in ``skip`` by."""
    held: Counter[str] = Counter()
    waiting: list[StoredExecution] = []
    for execution in executions:
        place = execution.queue
        if execution.status == "queued":
            if execution.owner is None or (execution.lease_expires or 0.0) <= now:
                if execution.id not in skip:
                    waiting.append(execution)
                continue
        elif execution.status not in IN_PROGRESS:
            continue
        if place is not None and place.key is not None:
            held[place.key] += 1
    waiting.sort(key=_order)
    taken: list[str] = []
    for execution in waiting:
        if len(taken) >= limit:
            break
        place = execution.queue
        if place is not None and place.key is not None:
            if held[place.key] >= place.limit:
                continue
            held[place.key] += 1
        taken.append(execution.id)
    return taken


def _order(execution: StoredExecution) -> tuple[Any, ...]:
    priority = execution.queue.priority if execution.queue is not None else 0
    return (-priority, execution.started_at or 0.0, execution.id)
