"""The in-memory store: for tests and for engines that need no durability."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from prana._records import Checkpoint, Execution, ExecutionStatus, NodeRun


@attrs.define
class _Kept:
    checkpoint: Checkpoint
    runs: dict[int, NodeRun] = attrs.field(factory=dict)


class MemoryStore:
    """Keeps executions in a dict. Nothing survives the process."""

    def __init__(self) -> None:
        self._executions: dict[str, _Kept] = {}

    async def commit(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Apply checkpoints; memory cannot fail half-way, so this is all or none."""
        for checkpoint in checkpoints:
            kept = self._executions.get(checkpoint.execution_id)
            if kept is None:
                kept = self._executions[checkpoint.execution_id] = _Kept(checkpoint=checkpoint)
            kept.checkpoint = checkpoint
            for run in checkpoint.runs:
                kept.runs[run.execution_index] = run

    async def get_execution(self, execution_id: str) -> Execution | None:
        """The execution with its audit trail, or ``None``."""
        kept = self._executions.get(execution_id)
        return None if kept is None else _to_execution(kept)

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        """Executions, newest first (by start time), filtered."""
        found = [
            kept
            for kept in self._executions.values()
            if (status is None or kept.checkpoint.status == status)
            and (workflow_id is None or kept.checkpoint.workflow_id == workflow_id)
        ]
        found.sort(key=lambda kept: kept.checkpoint.started_at or 0.0, reverse=True)
        return [_to_execution(kept) for kept in found[:limit]]

    async def aclose(self) -> None:
        """Nothing to release."""


def _to_execution(kept: _Kept) -> Execution:
    checkpoint = kept.checkpoint
    data = checkpoint.execution_data
    context = data.get("context_data", {})
    return Execution(
        id=checkpoint.execution_id,
        workflow_id=checkpoint.workflow_id,
        workflow_version=checkpoint.workflow_version,
        status=checkpoint.status,
        trigger=checkpoint.trigger,
        input=checkpoint.input,
        vars=dict(context.get("workflow", {})),
        node_runs=tuple(kept.runs[index] for index in sorted(kept.runs)),
        skipped=tuple(data.get("skipped", ())),
        error=checkpoint.error,
        started_at=checkpoint.started_at,
        finished_at=checkpoint.finished_at,
        iteration_count=data.get("iteration_count", 0),
        execution_data=data,
    )
