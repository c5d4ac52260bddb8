"""The Store protocol: where executions are kept (DESIGN §8).

Supervisors never talk to a store directly: they hand checkpoints to the engine's
checkpoint writer, which commits many at once (group commit). A store keeps and
returns records and enforces ownership (leases); it decides nothing about what a
workflow does.

Ownership: an execution that is running belongs to one engine (``owner``) until its
lease expires. A checkpoint is applied only by the owner; a waiting (suspended) or
ended execution has no owner, and an engine takes one with :meth:`Store.claim`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from prana._records import (
    Checkpoint,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    NodeRun,
    Suspension,
)


@attrs.frozen(kw_only=True)
class StoredWorkflow:
    """A workflow definition as stored: content-addressed by its hash."""

    hash: str
    id: str
    version: int
    definition: Mapping[str, Any]
    created_at: float


@attrs.frozen(kw_only=True)
class StoredExecution:
    """Everything a store keeps of an execution: enough to restore its state machine."""

    id: str
    workflow_id: str
    workflow_version: int
    workflow_hash: str
    trigger: str
    status: ExecutionStatus
    input: Any = None
    vars: Mapping[str, Any] = attrs.field(factory=dict)
    node_contexts: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    active_paths: Mapping[str, Any] = attrs.field(factory=dict)
    iteration_count: int = 0
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    parent_execution_id: str | None = None
    root_execution_id: str | None = None
    owner: str | None = None
    lease_expires: float | None = None
    runs: tuple[NodeRun, ...] = ()
    suspensions: tuple[Suspension, ...] = ()

    def to_execution(self) -> Execution:
        """The execution as a user sees it."""
        runs = {run.execution_index: run for run in self.runs}
        for execution_index, node_key, run_index, attempt, _ in self.active_paths.get(
            "running", ()
        ):
            runs.setdefault(
                execution_index,
                NodeRun(
                    node_key=node_key,
                    run_index=run_index,
                    execution_index=execution_index,
                    status="running",
                    attempt=attempt,
                ),
            )
        for suspension in self.suspensions:
            runs.setdefault(
                suspension.execution_index,
                NodeRun(
                    node_key=suspension.node_key,
                    run_index=suspension.run_index,
                    execution_index=suspension.execution_index,
                    status="suspended",
                    started_at=suspension.started_at,
                ),
            )
        ran = {run.node_key for run in self.runs}
        skipped = [key for key in self.active_paths.get("skipped", ()) if key not in ran]
        return Execution(
            id=self.id,
            workflow_id=self.workflow_id,
            workflow_version=self.workflow_version,
            status=self.status,
            trigger=self.trigger,
            input=self.input,
            vars=dict(self.vars),
            node_runs=tuple(runs[index] for index in sorted(runs)),
            skipped=tuple(skipped),
            suspensions=self.suspensions,
            error=self.error,
            started_at=self.started_at,
            finished_at=self.finished_at,
            iteration_count=self.iteration_count,
            execution_data={
                "context_data": {
                    "workflow": dict(self.vars),
                    "node": {key: dict(value) for key, value in self.node_contexts.items()},
                },
                "active_paths": dict(self.active_paths),
                "iteration_count": self.iteration_count,
            },
        )


def kept_paths(checkpoint: Checkpoint) -> Mapping[str, Any]:
    """The routing state a store keeps: all of it, but for a completed execution only
    the nodes it skipped (nothing will run again, so nothing else is needed)."""
    if checkpoint.status == "completed":
        return {"skipped": list(checkpoint.active_paths.get("skipped", ()))}
    return checkpoint.active_paths


@runtime_checkable
class Store(Protocol):
    """A place to keep executions: :class:`MemoryStore` or :class:`SQLiteStore`.

    Every method raises :class:`prana.StoreError` when the store cannot do its job.
    """

    async def open(self) -> None:
        """Make the store ready (create or check its schema). Raises StoreError and
        changes nothing if the store is not one prana can use safely."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds open."""
        ...

    async def commit(
        self, checkpoints: Sequence[Checkpoint], *, owner: str, lease_expires: float, now: float
    ) -> set[str]:
        """Apply every checkpoint in one transaction, all or none.

        A running execution is owned by ``owner`` until ``lease_expires``; a waiting or
        ended one is released. Checkpoints of executions that ``owner`` no longer owns
        are not applied; their ids are returned.
        """
        ...

    async def save_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a workflow definition (once per hash)."""
        ...

    async def load_workflow(self, workflow_hash: str) -> StoredWorkflow | None:
        """The definition with this hash, or ``None``."""
        ...

    async def load_execution(self, execution_id: str) -> StoredExecution | None:
        """Everything kept of an execution, or ``None`` if unknown."""
        ...

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
    ) -> list[StoredExecution]:
        """Executions (without their audit trails), newest first, filtered."""
        ...

    async def find_token(self, token: str) -> Suspension | None:
        """The waiting node that this resume token belongs to, or ``None``."""
        ...

    async def timers(self, *, before: float | None = None) -> list[Suspension]:
        """Waiting nodes with a deadline (before ``before``, if given), earliest first."""
        ...

    async def claim_orphans(
        self, *, owner: str, lease_expires: float, now: float, dead_owners: Iterable[str] = ()
    ) -> list[str]:
        """Take every running execution whose lease has expired (or whose owner is
        known to be dead); return their ids."""
        ...

    async def renew(
        self, execution_ids: Iterable[str], *, owner: str, lease_expires: float
    ) -> None:
        """Extend the lease of executions ``owner`` runs."""
        ...

    async def owners(self) -> list[str]:
        """The owners of running executions."""
        ...
