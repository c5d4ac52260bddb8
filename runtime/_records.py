"""Records of what happened: node runs, errors, and the execution as a user sees it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

import attrs

from ._blocks import joined
from ._json import SCALARS, copy_json

ExecutionStatus = Literal[
    "pending",
    "queued",
    "running",
    "suspended",
    "paused",
    "completed",
    "failed",
    "cancelled",
    "timed_out",
]
RunStatus = Literal["running", "suspended", "completed", "failed", "retried", "cancelled"]
# Every status, in the order an execution may pass through them.
EXECUTION_STATUSES: tuple[ExecutionStatus, ...] = get_args(ExecutionStatus)
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "timed_out"})
ChildMode = Literal["sync", "fire_and_forget"]
# The execution index of an execution's deadline timer (no node run has it).
DEADLINE_INDEX = -1


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

    def private_copy(self) -> ErrorInfo:
        """The same error, its details the caller's own to change."""
        return attrs.evolve(self, details=copy_json(self.details))


@attrs.frozen(kw_only=True)
class NodeRun:
    """One run of one node: an entry of the audit trail.

    ``run_index`` counts the runs of this node in the execution (loops run nodes
    again); ``execution_index`` orders every run of the execution. ``inputs`` says
    where the run's input came from: ``(port, execution_index)`` of each run whose
    output it received. Times are seconds since the epoch; ``duration_ms`` is measured
    with a monotonic clock (for a wait, it is the time the node waited).

    A node with ``settings.retry`` may take several attempts at one run: each failed
    attempt that was tried again is a record of its own with status ``retried``
    (``attempt`` 1, 2, ...), followed by the attempt that ended the run.

    ``params`` are the parameters the run was given, templates rendered (``None`` for
    a node without any); past ``Limits.recorded_params`` bytes of JSON, the start of
    their JSON text, ending in ``...``.
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
    inputs: tuple[tuple[str, int], ...] = ()
    params: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON data (an entry of ``node_runs`` in
        :meth:`Execution.to_dict`); its output and params are the record's own."""
        return {
            "node_key": self.node_key,
            "run_index": self.run_index,
            "execution_index": self.execution_index,
            "status": self.status,
            "attempt": self.attempt,
            "port": self.port,
            "output": self.output,
            "error": None if self.error is None else self.error.to_dict(),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
            "inputs": [[port, index] for port, index in self.inputs],
            "params": self.params,
        }

    def private_copy(self) -> NodeRun:
        """The same run, its data (output, params, error details) the caller's own to
        change: the execution goes on with the record's."""
        output, params, error = self.output, self.params, self.error
        if type(output) in SCALARS and type(params) in SCALARS and error is None:
            return self  # nothing in it can change
        return NodeRun(
            node_key=self.node_key,
            run_index=self.run_index,
            execution_index=self.execution_index,
            status=self.status,
            attempt=self.attempt,
            port=self.port,
            output=copy_json(output),
            error=None if error is None else error.private_copy(),
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_ms=self.duration_ms,
            inputs=self.inputs,
            params=copy_json(params),
        )

    def ended(
        self,
        status: RunStatus,
        result: NodeResult | None,
        *,
        port: str | None = None,
        output: Any = None,
        error: ErrorInfo | None = None,
    ) -> NodeRun:
        """This run's record once it ended with ``status``: its attempt and times are
        ``result``'s (none for a run that failed before its action ran)."""
        return NodeRun(
            node_key=self.node_key,
            run_index=self.run_index,
            execution_index=self.execution_index,
            status=status,
            attempt=self.attempt if result is None else result.attempt,
            port=port,
            output=output,
            error=error,
            started_at=None if result is None else result.started_at,
            finished_at=None if result is None else result.finished_at,
            duration_ms=None if result is None else result.duration_ms,
            inputs=self.inputs,
            params=self.params,
        )


@attrs.frozen(kw_only=True)
class SuspendRequest:
    """A worker's report that its action asked to wait (see :class:`prana.Suspend`);
    ``token`` is the resume token the worker made when one was asked for."""

    kind: str
    wake_at: float | None = None
    wake_port: str | None = None
    wake_data: Any = None
    resume_port: str | None = None
    token: str | None = None
    child_execution_id: str | None = None
    data: Any = None


@attrs.frozen(kw_only=True)
class Suspension:
    """A node waiting to be resumed or woken: kept with the execution until then.
    ``data`` is what the action said whoever answers needs to know
    (:attr:`prana.Suspend.data`); ``params`` are the waiting run's parameters as its
    record keeps them (:attr:`NodeRun.params`), for when it ends."""

    execution_id: str
    node_key: str
    run_index: int
    execution_index: int
    kind: str
    token: str | None = None
    wake_at: float | None = None
    wake_port: str
    wake_data: Any = None
    resume_port: str
    started_at: float | None = None
    child_execution_id: str | None = None
    data: Any = None
    params: Any = None

    def private_copy(self) -> Suspension:
        """The same wait, its data (``wake_data``, ``data``, ``params``) the caller's own
        to change."""
        return attrs.evolve(
            self,
            wake_data=copy_json(self.wake_data),
            data=copy_json(self.data),
            params=copy_json(self.params),
        )

    @property
    def timer_key(self) -> tuple[str, int]:
        """What tells this node's timer from every other one."""
        return (self.execution_id, self.execution_index)

    @property
    def is_deadline(self) -> bool:
        """Whether this is the execution's own deadline (``settings.timeout``), not a
        waiting node."""
        return self.execution_index == DEADLINE_INDEX

    @classmethod
    def deadline(cls, execution_id: str, at: float) -> Suspension:
        """The timer of an execution's deadline: the timer actor keeps it with the
        waiting nodes' timers."""
        return cls(
            execution_id=execution_id,
            node_key="",
            run_index=0,
            execution_index=DEADLINE_INDEX,
            kind="deadline",
            wake_at=at,
            wake_port="",
            resume_port="",
        )


@attrs.define(kw_only=True, eq=False)
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
    suspend: SuspendRequest | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: float | None = None


@attrs.frozen(kw_only=True)
class QueuePlace:
    """Where a queued execution stands in the queue (``WorkflowSettings``): its
    concurrency key (``None``: no limit), the most executions of that key in progress
    at once, and its priority (higher first)."""

    key: str | None = None
    limit: int = 1
    priority: int = 0


@attrs.frozen(kw_only=True)
class ChildOutcome:
    """How a child execution ended, as its parent's waiting node learns it."""

    child_execution_id: str
    status: ExecutionStatus
    output: Any = None
    error: ErrorInfo | None = None


@attrs.frozen(kw_only=True)
class Execution:
    """An execution as a user sees it: status, output, audit trail, error.

    Returned by ``engine.run`` and ``handle.result()``. ``node_runs`` is the audit
    trail in execution order. A live execution holds only the runs its next steps
    need once it has made a few hundred: ``runs_left_out`` says how many of the
    trail's runs ``node_runs`` leaves out (the store has them all, and
    :meth:`Engine.get` reads them). ``output`` is the output of the last node run that
    completed; ``outputs`` maps each node to the output of its latest completed run;
    ``skipped`` lists the nodes that never ran because every path to them died;
    ``suspensions`` the nodes waiting now (with their resume token and deadline).
    ``last_event`` is the sequence number of its last event (0: none yet): a
    subscriber that read this execution goes on with the events numbered after it.
    """

    id: str
    workflow_id: str
    workflow_version: int
    status: ExecutionStatus
    trigger: str
    input: Any = None
    vars: Mapping[str, Any] = attrs.field(factory=dict)
    node_runs: tuple[NodeRun, ...] = ()
    runs_left_out: int = 0
    skipped: tuple[str, ...] = ()
    suspensions: tuple[Suspension, ...] = ()
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    iteration_count: int = 0
    execution_data: Mapping[str, Any] = attrs.field(factory=dict)
    deadline: float | None = None
    parent_execution_id: str | None = None
    root_execution_id: str | None = None
    mode: ChildMode | None = None
    last_event: int = 0
    concurrency_key: str | None = None
    priority: int = 0

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

    def to_dict(self, *, runs: bool = True) -> dict[str, Any]:
        """The execution as JSON data (what ``prana show --json`` prints and the
        daemon's API returns); without the audit trail unless ``runs``. Inputs,
        outputs and params are the record's own values, not copies."""
        data: dict[str, Any] = {
            "id": self.id,
            "workflow_id": self.workflow_id,
            "workflow_version": self.workflow_version,
            "status": self.status,
            "trigger": self.trigger,
            "input": self.input,
            "error": self.error.to_dict() if self.error is not None else None,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
            "deadline": self.deadline,
            "parent_execution_id": self.parent_execution_id,
            "root_execution_id": self.root_execution_id,
            "mode": self.mode,
            "suspensions": [attrs.asdict(suspension) for suspension in self.suspensions],
            "last_event": self.last_event,
            "concurrency_key": self.concurrency_key,
            "priority": self.priority,
        }
        if runs:
            data |= {
                "order": self.order,
                "skipped": list(self.skipped),
                "output": self.output,
                "node_runs": [run.to_dict() for run in self.node_runs],
                "runs_left_out": self.runs_left_out,
                "vars": dict(self.vars),
                "iteration_count": self.iteration_count,
            }
        return data


CheckpointKind = Literal["start", "step", "change", "take"]


@attrs.define(kw_only=True, eq=False)
class Checkpoint:
    """What changed in an execution since its previous checkpoint (DESIGN §8).

    A store applies it in one transaction, as its ``kind`` says. The core decides the
    kind, and what the checkpoint holds; a store only keeps it:

    * ``start``: the execution's first checkpoint: its row is created, owned by the
      engine if it runs (not applied if the row exists: another engine started it).
    * ``step``: a running execution that stays running: node runs are appended, the
      routing state, node contexts and suspensions change; its row (status, owner,
      lease, variables, revision) is left alone.
    * ``change``: its row changes too: the status (with the error and timestamps), the
      variables, the deadline; a running execution stays owned by the engine, any
      other is released; ``revision`` grows by one.
    * ``take``: a ``change`` that takes the execution from the store, applied only if
      its status there is still ``take_from``, its revision still ``revision`` and no
      live engine owns it.

    Applied only by the engine that owns the execution (``start`` and ``take`` make
    it the owner). ``clear_request`` (``change``, ``take``) clears a control request
    left for the execution in the store. ``active_paths`` (the routing state, bounded
    by the size of the workflow) and ``iteration_count`` replace what the store had;
    in a large workflow, most of the routing state is in blocks, and ``paths_blocks``
    holds those that changed, by number: each replaces the store's block of that
    number, and ``None`` drops it;
    ``vars`` is ``None`` when unchanged; ``node_contexts`` holds only the fields of
    node contexts that changed (each replaces the store's field of that name) and
    ``node_context_drops`` the fields that are gone; ``queue`` (``start`` of a queued
    execution) is its place in the queue, kept with it; ``status_changed`` is false when the status (and with it the error
    and the timestamps) is the one saved last; ``runs`` are the node runs that ended
    since the last checkpoint, appended to the audit trail; suspensions are added
    and removed (by execution index). Nothing in it grows with the length of the
    execution.
    """

    execution_id: str
    kind: CheckpointKind
    workflow_id: str
    workflow_version: int
    workflow_hash: str = ""
    status: ExecutionStatus
    trigger: str
    input: Any = None
    status_changed: bool = True
    active_paths: Mapping[str, Any] = attrs.field(factory=dict)
    paths_blocks: Mapping[int, Any] = attrs.field(factory=dict)
    iteration_count: int = 0
    vars: Mapping[str, Any] | None = None
    node_contexts: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    node_context_drops: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    runs: tuple[NodeRun, ...] = ()
    suspensions_added: tuple[Suspension, ...] = ()
    suspensions_removed: tuple[int, ...] = ()
    parent_execution_id: str | None = None
    root_execution_id: str | None = None
    mode: ChildMode | None = None
    depth: int = 0
    deadline: float | None = None
    take_from: ExecutionStatus = "suspended"
    revision: int = 0
    clear_request: bool = False
    queue: QueuePlace | None = None


@attrs.frozen(kw_only=True)
class StoredExecution:
    """Everything a store keeps of an execution: enough to restore its state machine
    (:meth:`prana.lowlevel.ExecutionMachine.restored`) and to show it (:meth:`to_execution`)."""

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
    paths_blocks: Mapping[int, Any] = attrs.field(factory=dict)
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
    mode: ChildMode | None = None
    depth: int = 0
    deadline: float | None = None
    request: Mapping[str, Any] | None = None
    revision: int = 0
    queue: QueuePlace | None = None
    # False when the store read only the runs an execution that goes on needs
    # (``RunsWanted``): restoring it then takes the others as left to the store.
    all_runs: bool = True

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
            runs.setdefault(suspension.execution_index, waiting_run(suspension, self.runs))
        ran = {run.node_key for run in self.runs}
        skipped = [key for key in self.active_paths.get("skipped", ()) if key not in ran]
        return Execution(
            last_event=self.active_paths.get("events", 0),
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
                # Listings leave the blocks out, as they leave the audit trail out.
                "active_paths": joined(self.active_paths, self.paths_blocks)
                if self.paths_blocks
                else dict(self.active_paths),
                "iteration_count": self.iteration_count,
            },
            deadline=self.deadline,
            parent_execution_id=self.parent_execution_id,
            root_execution_id=self.root_execution_id,
            mode=self.mode,
            concurrency_key=self.queue.key if self.queue is not None else None,
            priority=self.queue.priority if self.queue is not None else 0,
        )


def waiting_run(
    suspension: Suspension, runs: Iterable[NodeRun], inputs: tuple[tuple[str, int], ...] = ()
) -> NodeRun:
    """The audit record of a node that waits: its attempt follows the attempts of the
    same run that failed and were tried again (a retry waits as a suspension)."""
    retried = sum(
        1
        for run in runs
        if run.status == "retried"
        and run.node_key == suspension.node_key
        and run.run_index == suspension.run_index
    )
    return NodeRun(
        node_key=suspension.node_key,
        run_index=suspension.run_index,
        execution_index=suspension.execution_index,
        status="suspended",
        attempt=retried + 1,
        started_at=suspension.started_at,
        inputs=inputs,
        params=suspension.params,
    )
