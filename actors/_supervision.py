"""What an execution supervisor takes and is lent, and how it stops short.

Its inbox's messages (node results and child outcomes are records of
:mod:`prana._records`), how each applies to an execution's state machine, the
services an engine lends every supervisor, and the errors of a supervisor that
stopped before its execution reached a stop of its own.

Requests (:class:`ResumeRequest`, :class:`ControlRequest`) are futures: whoever
delivers one waits for its ``done`` event and then reads its ``error``. The same
request is applied by the supervisor of a live execution, or by the engine to an
execution it takes from the store (:func:`apply_message`), so both agree on what it
means.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs
from anyio import CancelScope

from prana._commands import Command
from prana._control import ControlAction, check_allowed
from prana._errors import InvalidTransition, PranaError
from prana._machine import ExecutionMachine
from prana._records import ChildOutcome, Execution, NodeResult, StoredExecution
from prana._waiting import WaitTimedOut

from ._clock import Clock
from ._worker import answer_resume

if TYPE_CHECKING:
    from prana._commands import Dispatch
    from prana._subworkflows import ExecuteWorkflow

    from ._clock import Clock
    from ._ownership import Leases
    from ._tally import Tally
    from ._timers import TimerActor
    from ._turns import Turns
    from ._writer import CheckpointWriter


@attrs.define(eq=False)
class ResumeRequest:
    """Resume a waiting node; ``error`` is set if it cannot be."""

    node_key: str | None
    data: Any
    done: anyio.Event = attrs.field(factory=anyio.Event)
    error: PranaError | None = None


@attrs.define(eq=False)
class ControlRequest:
    """Cancel, pause, unpause or retry an execution; ``error`` is set if it cannot
    be. ``from_store`` marks a request another engine left in the store (the
    checkpoint that applies it clears it there)."""

    action: ControlAction
    reason: str | None = None
    from_store: bool = False
    done: anyio.Event = attrs.field(factory=anyio.Event)
    error: PranaError | None = None


@attrs.frozen(kw_only=True)
class WakeRequest:
    """A timer fired for the waiting run at ``execution_index`` (or the execution's
    deadline)."""

    execution_index: int


@attrs.frozen(kw_only=True)
class LeaseLost:
    """The engine no longer holds the execution: another engine took it."""


@attrs.frozen(kw_only=True)
class WorkerFailed:
    """A worker stopped on ``error`` instead of reporting a result: it found the
    lease lost before its action started, or met a bug."""

    error: Exception


Request = ResumeRequest | ControlRequest
Message = (
    NodeResult
    | ResumeRequest
    | ControlRequest
    | WakeRequest
    | ChildOutcome
    | LeaseLost
    | WorkerFailed
)


def apply_message(
    machine: ExecutionMachine, message: Request | WakeRequest | ChildOutcome, clock: Clock
) -> list[Command]:
    """What ``message`` does to ``machine``: its commands. Raises
    :class:`InvalidTransition`, changing nothing, for a request the execution cannot
    take now (or whose data the node's resume step refused); a resume that comes after
    its wait timed out is refused in ``message.error`` instead, and the wait ends
    through its timeout."""
    now = clock.now()
    if isinstance(message, WakeRequest):
        return machine.wake(message.execution_index, now)
    if isinstance(message, ChildOutcome):
        return machine.child_ended(message, now)
    if isinstance(message, ResumeRequest):
        try:
            answered = answer_resume(machine, message.node_key, message.data, clock)
            return machine.resume(message.node_key, message.data, now, answered)
        except WaitTimedOut as exc:
            # Too late: refused, and the wait ends through its timeout now, as its
            # timer (in whichever engine) would end it.
            message.error = exc
            return machine.wake(exc.execution_index, now)
    if message.action == "cancel":
        return machine.cancel(message.reason, now)
    if message.action == "pause":
        return machine.pause(now)
    if message.action == "unpause":
        return machine.unpause(now)
    return machine.retry(now)


def check_request(request: ResumeRequest | ControlRequest, stored: StoredExecution) -> None:
    """Raise :class:`InvalidTransition` if ``request`` cannot apply to ``stored``
    (checked before restoring it: an ended execution is not restored)."""
    if isinstance(request, ControlRequest):
        check_allowed(request.action, stored.status, stored.id)
    elif stored.status not in ("suspended", "paused"):
        raise InvalidTransition(
            f"execution {stored.id} is {stored.status}; only a waiting (suspended) "
            "execution can be resumed"
        )


class Parent(Protocol):
    """What an engine does for the executions it runs that its supervisors cannot."""

    async def start_child(
        self, parent: ExecutionMachine, dispatch: Dispatch, request: ExecuteWorkflow
    ) -> str:
        """Start (or find, when the node runs again) the child a node asks for."""
        ...

    async def run_children(
        self,
        parent: ExecutionMachine,
        dispatch: Dispatch,
        request: ExecuteWorkflow,
        deadline: float | None,
    ) -> list[Any]:
        """Run the batch of children a node asks for (one per item); their outputs."""
        ...

    def cancel_batch(self, execution_id: str, execution_index: int, reason: str) -> None:
        """Cancel the children still running of the batch a run was running, if any."""
        ...

    def child_finished(self, child: Execution) -> None:
        """A ``sync`` child ended and is saved: tell its parent."""
        ...

    def cancel_children(self, execution_ids: tuple[str, ...], reason: str) -> None:
        """Cancel children whose parent stopped waiting for them."""
        ...


@attrs.frozen(kw_only=True)
class Services:
    """What an engine lends its supervisors; ``start_worker`` runs a worker in a task of
    its own (see :mod:`._workers`); a supervisor steps only while it holds one of
    ``turns``."""

    clock: Clock
    writer: CheckpointWriter
    timers: TimerActor
    leases: Leases
    durable: bool
    parent: Parent
    start_worker: Callable[[Coroutine[Any, Any, None]], CancelScope]
    turns: Turns
    tally: Tally


class Stopped(PranaError):
    """The supervisor stopped before the execution reached a stop of its own: the
    engine stopped, or the store failed."""


class Lost(PranaError):
    """Another engine owns the execution now: this engine's lease expired (or the
    other took the execution first), so it stopped running it."""


def lost(execution_id: str) -> Lost:
    """The error of a supervisor that lost its execution to another engine."""
    return Lost(
        f"execution {execution_id} is now run by another engine (this engine's lease "
        "expired, or the other took the execution first); it stopped here"
    )
