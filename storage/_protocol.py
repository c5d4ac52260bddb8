"""The Store protocol: where executions are kept (DESIGN §8).

Supervisors never talk to a store directly: they hand checkpoints to whoever owns
the store (the engine), which may commit many at once (group commit). A store
interprets no workflow semantics; it keeps and returns records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from prana._records import Checkpoint, Execution, ExecutionStatus


@runtime_checkable
class Store(Protocol):
    """A place to keep executions. Implementations: :class:`MemoryStore`."""

    async def commit(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Apply every checkpoint, all or none. Raises :class:`prana.StoreError`."""
        ...

    async def get_execution(self, execution_id: str) -> Execution | None:
        """The execution with its whole audit trail, or ``None`` if unknown."""
        ...

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        """Executions, newest first, filtered by status and workflow."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds open."""
        ...
