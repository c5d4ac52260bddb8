"""Control requests from outside an execution: which are legal when (DESIGN §5.7).

The rules themselves (what cancel, pause, unpause, retry and a timeout do) are the
machine's (:class:`prana._machine.ExecutionMachine`); the engine uses what is here
to refuse a request before it reaches a supervisor, and to end an execution that
cannot be restored any more without restoring it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

from ._errors import InvalidTransition
from ._records import (
    Checkpoint,
    ErrorInfo,
    ExecutionStatus,
    NodeRun,
    StoredExecution,
    waiting_run,
)

if TYPE_CHECKING:
    pass


ControlAction = Literal["cancel", "pause", "unpause", "retry"]
# From which statuses each request is legal.
ALLOWED: dict[ControlAction, tuple[ExecutionStatus, ...]] = {
    "cancel": ("pending", "queued", "running", "suspended", "paused"),
    "pause": ("running", "suspended"),
    "unpause": ("paused",),
    "retry": ("failed",),
}
_WHAT: dict[ControlAction, str] = {
    "cancel": "only an execution that has not ended can be cancelled",
    "pause": "only a running or waiting execution can be paused",
    "unpause": "only a paused execution can be unpaused",
    "retry": "only a failed execution can be retried",
}


def check_allowed(action: ControlAction, status: ExecutionStatus, execution_id: str) -> None:
    """Raise :class:`InvalidTransition` unless ``action`` is legal from ``status``."""
    if status not in ALLOWED[action]:
        raise InvalidTransition(f"execution {execution_id} is {status}; {_WHAT[action]}")


def unrestorable_checkpoint(
    stored: StoredExecution, status: ExecutionStatus, error: ErrorInfo, now: float
) -> Checkpoint:
    """A checkpoint that ends ``stored`` with ``status`` and ``error`` without
    restoring it (its workflow cannot be compiled any more, say), as :func:`stop`
    would: its running and waiting runs are cancelled, its routing state is kept.
    Retried once the workflow can be restored again, it runs the nodes cut short.

    It takes the execution from the store (unless the engine holds it already:
    running, claimed after its engine died), so it is applied only if nobody changed
    it since it was read.
    """
    paths = dict(stored.active_paths)
    waiting_inputs = paths.pop("waiting", {})
    paths.pop("pausing", None)
    cancelled = [
        NodeRun(
            node_key=node_key,
            run_index=run_index,
            execution_index=execution_index,
            status="cancelled",
            attempt=attempt,
            finished_at=now,
            inputs=tuple((str(port), int(source)) for port, source in inputs),
        )
        for execution_index, node_key, run_index, attempt, inputs in paths.pop("running", ())
    ]
    for suspension in stored.suspensions:
        inputs = waiting_inputs.get(str(suspension.execution_index), ())
        run = waiting_run(
            suspension, stored.runs, tuple((str(port), int(source)) for port, source in inputs)
        )
        cancelled.append(attrs.evolve(run, status="cancelled", finished_at=now))
    return Checkpoint(
        execution_id=stored.id,
        kind="change" if stored.status == "running" else "take",
        workflow_id=stored.workflow_id,
        workflow_version=stored.workflow_version,
        workflow_hash=stored.workflow_hash,
        status=status,
        trigger=stored.trigger,
        input=stored.input,
        active_paths=paths,
        iteration_count=stored.iteration_count,
        error=error,
        started_at=stored.started_at if stored.started_at is not None else now,
        finished_at=now,
        runs=tuple(sorted(cancelled, key=lambda run: run.execution_index)),
        suspensions_removed=tuple(s.execution_index for s in stored.suspensions),
        parent_execution_id=stored.parent_execution_id,
        root_execution_id=stored.root_execution_id,
        mode=stored.mode,
        depth=stored.depth,
        deadline=stored.deadline,
        take_from=stored.status,
        revision=stored.revision,
    )
