"""The filter of ``Store.list_executions`` as SQL, for the SQL stores."""

from __future__ import annotations

from typing import Any

from prana._records import ExecutionStatus


def execution_filter(
    *,
    status: ExecutionStatus | None,
    workflow_id: str | None,
    started_after: float | None,
    started_before: float | None,
    older_than: tuple[float, str] | None,
    mark: str,
    started: str,
    prefix: str = "",
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause ('' if none) and its values; ``mark`` is the driver's
    placeholder, ``started`` the expression of the start time, ``prefix`` the table's
    alias and a dot."""
    where: list[str] = []
    values: list[Any] = []
    if status is not None:
        where.append(f"{prefix}status = {mark}")
        values.append(status)
    if workflow_id is not None:
        where.append(f"{prefix}workflow_id = {mark}")
        values.append(workflow_id)
    if started_after is not None:
        where.append(f"{started} >= {mark}")
        values.append(started_after)
    if started_before is not None:
        where.append(f"{started} < {mark}")
        values.append(started_before)
    if older_than is not None:
        where.append(f"({started} < {mark} OR ({started} = {mark} AND {prefix}id < {mark}))")
        values.extend((older_than[0], older_than[0], older_than[1]))
    return (f"WHERE {' AND '.join(where)}" if where else ""), values
