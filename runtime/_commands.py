"""What the state machine asks of its supervisor, and tells it (DESIGN §7).

Commands (:class:`Dispatch`, :class:`CancelRuns`, :class:`CancelChildren`) are to be
carried out in order; notices (:class:`RunFinished`, :class:`RunRetrying`,
:class:`NodeSkipped`, :class:`NodeSuspended`, :class:`ExecutionSuspended`,
:class:`ExecutionPaused`, :class:`ExecutionResumed`, :class:`ExecutionFinished`) say
what happened.
"""

from __future__ import annotations

import attrs

from ._context import NodeContext
from ._limits import DEFAULT_LIMITS, Limits
from ._records import ExecutionStatus, NodeRun, Suspension
from ._registry import Action


@attrs.define(kw_only=True, eq=False)
class Dispatch:
    """Command: run ``action`` for ``run`` with ``context``, then report a NodeResult.

    ``not_before`` (a time) delays the start: a retry's backoff. ``timeout`` (seconds)
    cancels the action if it runs longer; the run then fails with code ``timeout``.
    What the action gives must be JSON data within ``limits``.
    """

    run: NodeRun
    action: Action
    context: NodeContext
    not_before: float | None = None
    timeout: float | None = None
    limits: Limits = DEFAULT_LIMITS


@attrs.frozen(kw_only=True)
class CancelRuns:
    """Command: cancel the workers of these runs (by execution index); the execution
    has failed and their results no longer matter."""

    execution_indexes: tuple[int, ...]


@attrs.frozen(kw_only=True)
class CancelChildren:
    """Command: cancel these child executions (``sync`` children of nodes that
    stopped waiting because the execution ended), with ``reason``."""

    execution_ids: tuple[str, ...]
    reason: str


@attrs.frozen(kw_only=True)
class RunFinished:
    """Notice: a node run ended (completed, failed, or cancelled)."""

    run: NodeRun


@attrs.frozen(kw_only=True)
class RunRetrying:
    """Notice: a node run failed and will be tried again at ``at`` (``run`` is the
    failed attempt, as recorded)."""

    run: NodeRun
    next_attempt: int
    at: float


@attrs.frozen(kw_only=True)
class NodeSkipped:
    """Notice: a node will not run in this iteration; every path into it died."""

    node_key: str


@attrs.frozen(kw_only=True)
class ExecutionFinished:
    """Notice: the execution reached a final status."""

    status: ExecutionStatus


@attrs.frozen(kw_only=True)
class NodeSuspended:
    """Notice: a node is waiting (to be resumed, or for its deadline)."""

    suspension: Suspension


@attrs.frozen(kw_only=True)
class ExecutionSuspended:
    """Notice: nothing can run until a waiting node is resumed or woken; the
    execution can be saved and leave memory."""

    suspensions: tuple[Suspension, ...]


@attrs.frozen(kw_only=True)
class ExecutionPaused:
    """Notice: the execution is paused; nothing new runs until it is unpaused."""


@attrs.frozen(kw_only=True)
class ExecutionResumed:
    """Notice: a paused execution was unpaused (``cause="unpause"``) or a failed one
    is being retried (``cause="retry"``)."""

    cause: str


Command = (
    Dispatch
    | CancelRuns
    | CancelChildren
    | ExecutionPaused
    | ExecutionResumed
    | RunFinished
    | RunRetrying
    | NodeSkipped
    | NodeSuspended
    | ExecutionSuspended
    | ExecutionFinished
)
