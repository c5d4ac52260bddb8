"""Typed events: what subscribers and middleware hear about executions (DESIGN §9).

Every event carries the execution id, a sequence number and the time it happened
(seconds since the epoch, on the engine's clock). An execution's events are numbered
1, 2, ... with no gaps over its whole life: the number is saved with the execution,
so a waiting execution resumed later, or carried on by another engine, goes on where
it stopped (a rerun is a new execution, numbered from 1). Events are made by the
execution's state machine and published once the step that made them is saved
(:mod:`prana._journal`). Node events
carry ``progress``: the share of the execution's nodes that have finished or been
skipped at least once, from 0.0 to 1.0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._json import SCALARS
from ._records import ErrorInfo, ExecutionStatus, NodeRun, Suspension


@attrs.frozen(kw_only=True)
class Event:
    """Base of every event. ``attributes`` are what middleware added on the way
    (``next(attrs.evolve(event, attributes={**event.attributes, "tenant": t}))``)."""

    execution_id: str
    sequence: int
    time: float
    attributes: Mapping[str, Any] = attrs.field(factory=dict)

    def private_copy(self) -> Event:
        """The same event, the data it carries (a run's output, a wait's data) the
        reader's own to change: the execution goes on with its own, and a reader
        that changed it in place would change what later nodes see."""
        return self

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON data, its kind (the class name) as ``type``."""
        data: dict[str, Any] = {"type": type(self).__name__}
        for name in _field_names(type(self)):
            data[name] = _data(getattr(self, name))
        return data


_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}


def _field_names(kind: type[Event]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(field.name for field in attrs.fields(kind))
    return names


def _data(value: Any) -> Any:
    """A field of an event as JSON data, as ``attrs.asdict`` makes it (a run's output
    and params as they are: JSON data already)."""
    if type(value) in SCALARS:
        return value
    if isinstance(value, (NodeRun, ErrorInfo)):
        return value.to_dict()
    if attrs.has(type(value)):  # a suspension, or what middleware added
        return attrs.asdict(value)
    if isinstance(value, (tuple, list)):
        return [_data(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _data(item) for key, item in value.items()}
    return value


@attrs.frozen(kw_only=True)
class ExecutionStarted(Event):
    """An execution began running."""

    workflow_id: str
    workflow_version: int
    node_count: int


@attrs.frozen(kw_only=True)
class ExecutionQueued(Event):
    """An execution was saved ``queued``: it starts (``ExecutionStarted``) once an
    engine claims it, when its concurrency key, or an engine, has room."""

    workflow_id: str
    workflow_version: int
    concurrency_key: str | None
    priority: int


@attrs.frozen(kw_only=True)
class ExecutionCompleted(Event):
    """An execution ended with status ``completed``."""

    status: ExecutionStatus = "completed"


@attrs.frozen(kw_only=True)
class ExecutionFailed(Event):
    """An execution ended with status ``failed``; ``error`` says why."""

    error: ErrorInfo | None
    status: ExecutionStatus = "failed"


@attrs.frozen(kw_only=True)
class ExecutionCancelled(Event):
    """An execution ended with status ``cancelled``; ``error.message`` is the reason."""

    error: ErrorInfo | None
    status: ExecutionStatus = "cancelled"


@attrs.frozen(kw_only=True)
class ExecutionTimedOut(Event):
    """An execution ran past its ``settings.timeout`` and ended ``timed_out``."""

    error: ErrorInfo | None
    status: ExecutionStatus = "timed_out"


@attrs.frozen(kw_only=True)
class ExecutionPaused(Event):
    """An execution is paused: its running nodes have finished and nothing new runs
    until it is unpaused."""

    status: ExecutionStatus = "paused"


@attrs.frozen(kw_only=True)
class ExecutionResumed(Event):
    """A paused execution carries on (``cause="unpause"``), a failed one runs its
    failed node again (``cause="retry"``), or a suspended one carries on because a
    wait ended: resumed with a token, its timer fired, its child ended
    (``cause="wait"``; the waiting node's completion follows)."""

    cause: str


@attrs.frozen(kw_only=True)
class NodeStarted(Event):
    """A node run was dispatched to its worker."""

    node_key: str
    run_index: int
    execution_index: int


@attrs.frozen(kw_only=True)
class NodeCompleted(Event):
    """A node run completed; ``run`` has its port, output and timings."""

    node_key: str
    run: NodeRun
    progress: float

    def private_copy(self) -> Event:
        return attrs.evolve(self, run=self.run.private_copy())


@attrs.frozen(kw_only=True)
class NodeFailed(Event):
    """A node run failed (or was cancelled); ``run.error`` says why."""

    node_key: str
    run: NodeRun
    progress: float

    def private_copy(self) -> Event:
        return attrs.evolve(self, run=self.run.private_copy())


@attrs.frozen(kw_only=True)
class NodeRetrying(Event):
    """A node run failed and will be tried again: ``run`` is the failed attempt (its
    ``error`` says why), ``next_attempt`` starts at ``at``."""

    node_key: str
    run: NodeRun
    next_attempt: int
    at: float

    def private_copy(self) -> Event:
        return attrs.evolve(self, run=self.run.private_copy())


@attrs.frozen(kw_only=True)
class NodeSkipped(Event):
    """A node will not run in this iteration: every path into it died."""

    node_key: str
    progress: float


@attrs.frozen(kw_only=True)
class NodeSuspended(Event):
    """A node is waiting: to be resumed (``suspension.token``) or for its deadline
    (``suspension.wake_at``)."""

    node_key: str
    suspension: Suspension

    def private_copy(self) -> Event:
        return attrs.evolve(self, suspension=self.suspension.private_copy())


@attrs.frozen(kw_only=True)
class ExecutionSuspended(Event):
    """Nothing can run until a waiting node is resumed or woken; the execution is
    saved and leaves memory."""

    suspensions: tuple[Suspension, ...]
    status: ExecutionStatus = "suspended"

    def private_copy(self) -> Event:
        return attrs.evolve(self, suspensions=tuple(s.private_copy() for s in self.suspensions))


@attrs.frozen(kw_only=True)
class EventsDropped(Event):
    """A subscriber fell behind and ``count`` events were dropped before this one.

    Subscriptions are bounded so a slow reader never holds the engine up; this event
    says that the reader missed some.
    """

    count: int


# The events that end an execution (one of them is its last event).
EXECUTION_ENDED = (ExecutionCompleted, ExecutionFailed, ExecutionCancelled, ExecutionTimedOut)
