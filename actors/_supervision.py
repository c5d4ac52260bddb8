"""What an execution supervisor takes and is lent, and how it stops short.

Its inbox's messages (node results come from :mod:`prana._records`), the services
an engine lends every supervisor, and the two errors of a supervisor that stopped
before its execution reached a stop of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import attrs

from prana._errors import PranaError
from prana._records import ChildOutcome, Execution, NodeResult

if TYPE_CHECKING:
    from prana._commands import Dispatch
    from prana._machine import ExecutionMachine
    from prana._subworkflows import ExecuteWorkflow

    from ._clock import Clock
    from ._timers import TimerActor
    from ._writer import CheckpointWriter


@attrs.define(eq=False)
class ResumeRequest:
    """Resume a waiting node of a live execution; ``error`` is set if it cannot be."""

    node_key: str | None
    data: Any
    done: anyio.Event = attrs.field(factory=anyio.Event)
    error: PranaError | None = None


@attrs.frozen(kw_only=True)
class WakeRequest:
    """A timer fired for the waiting run at ``execution_index`` (or the execution's
    deadline)."""

    execution_index: int


@attrs.define(eq=False)
class ControlRequest:
    """Cancel or pause a live execution; ``error`` is set if it cannot be.
    ``from_store`` marks a request another engine left in the store (the checkpoint
    that follows clears it there)."""

    action: Literal["cancel", "pause"]
    reason: str | None = None
    from_store: bool = False
    done: anyio.Event = attrs.field(factory=anyio.Event)
    error: PranaError | None = None


Message = NodeResult | ResumeRequest | WakeRequest | ControlRequest | ChildOutcome


class Parent(Protocol):
    """What an engine does for the executions it runs that its supervisors cannot."""

    async def start_child(
        self, parent: ExecutionMachine, dispatch: Dispatch, request: ExecuteWorkflow
    ) -> str:
        """Start (or find, when the node runs again) the child a node asks for."""
        ...

    def child_finished(self, child: Execution) -> None:
        """A ``sync`` child ended and is saved: tell its parent."""
        ...

    def cancel_children(self, execution_ids: tuple[str, ...], reason: str) -> None:
        """Cancel children whose parent stopped waiting for them."""
        ...


@attrs.frozen(kw_only=True)
class Services:
    """What an engine lends its supervisors."""

    clock: Clock
    writer: CheckpointWriter
    timers: TimerActor
    durable: bool
    parent: Parent


class Stopped(PranaError):
    """The supervisor stopped before the execution reached a stop of its own."""


class Lost(PranaError):
    """Another engine owns the execution now: its checkpoint was not applied."""
