"""Records of what happened: node runs, errors, and the execution as a user sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

ExecutionStatus = Literal[
    "pending", "running", "suspended", "paused", "completed", "failed", "cancelled", "timed_out"
]
RunStatus = Literal["running", "completed", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "timed_out"})


@attrs.frozen(kw_only=True)
class ErrorInfo:
    """An error as recorded: a stable ``code``, a ``message`` for people, ``details``
    for programs, and the node it happened at (if any)."""

    code: str
    message: str
    details: Any = None
    node_key: str | None = None
    run_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON data, as routed to an error port or shown by the CLI."""
        return {
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "node_key": self.node_key,
            "run_index": self.run_index,
        }


@attrs.frozen(kw_only=True)
class NodeRun:
    """One run of one node: an entry of the audit trail.

    ``run_index`` counts the runs of this node in the execution (loops run nodes
    again); ``execution_index`` orders every run of the execution. Times are seconds
    since the epoch; ``duration_ms`` is measured with a monotonic clock.
    """

    node_key: str
    run_index: int
    execution_index: int
    status: RunStatus
    attempt: int = 1
    port: str | None = None
    output: Any = None
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: float | None = None


@attrs.frozen(kw_only=True)
class NodeResult:
    """The message a node worker sends its supervisor when the action has returned
    (``error`` is ``None``) or failed."""

    node_key: str
    run_index: int
    execution_index: int
    attempt: int = 1
    data: Any = None
    port: str | None = None
    node_context: Mapping[str, Any] | None = None
    vars: Mapping[str, Any] | None = None
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: float | None = None


@attrs.frozen(kw_only=True)
class Execution:
    """An execution as a user sees it: status, output, audit trail, error.

    Returned by ``engine.run`` and ``handle.result()``. ``node_runs`` is the audit
    trail in execution order; ``output`` is the output of the last node run that
    completed; ``outputs`` maps each node to the output of its latest completed run;
    ``skipped`` lists the nodes that never ran because every path to them died.
    """

    id: str
    workflow_id: str
    workflow_version: int
    status: ExecutionStatus
    trigger: str
    input: Any = None
    vars: Mapping[str, Any] = attrs.field(factory=dict)
    node_runs: tuple[NodeRun, ...] = ()
    skipped: tuple[str, ...] = ()
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    iteration_count: int = 0
    execution_data: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def output(self) -> Any:
        """The output of the last node run that completed, or ``None``."""
        for run in reversed(self.node_runs):
            if run.status == "completed":
                return run.output
        return None

    @property
    def outputs(self) -> dict[str, Any]:
        """Each node's latest completed output, by node key."""
        return {run.node_key: run.output for run in self.node_runs if run.status == "completed"}

    @property
    def order(self) -> list[str]:
        """The node keys of the runs, in execution order."""
        return [run.node_key for run in self.node_runs]

    @property
    def duration_ms(self) -> float | None:
        """Wall time from start to finish, in milliseconds, once finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at) * 1000.0

    @property
    def finished(self) -> bool:
        """Whether the execution has ended (completed, failed, cancelled, timed out)."""
        return self.status in FINAL_STATUSES

    def runs_of(self, node_key: str) -> list[NodeRun]:
        """Every run of one node, in order."""
        return [run for run in self.node_runs if run.node_key == node_key]


@attrs.frozen(kw_only=True)
class Checkpoint:
    """What a store keeps of an execution at one moment (DESIGN §8).

    The header fields and ``execution_data`` replace what the store had; ``runs`` are
    the node runs that are new or changed since the previous checkpoint of the same
    execution (a run is identified by its ``execution_index``). A store never needs a
    copy of earlier outputs to apply a checkpoint.
    """

    execution_id: str
    workflow_id: str
    workflow_version: int
    status: ExecutionStatus
    trigger: str
    input: Any = None
    execution_data: Mapping[str, Any] = attrs.field(factory=dict)
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    runs: tuple[NodeRun, ...] = ()
