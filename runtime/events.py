"""The events an engine publishes about executions (DESIGN §9): what
``handle.events()``, ``engine.events()`` and middleware see."""

from ._events import EXECUTION_ENDED as EXECUTION_ENDED
from ._events import Event as Event
from ._events import EventsDropped as EventsDropped
from ._events import ExecutionCancelled as ExecutionCancelled
from ._events import ExecutionCompleted as ExecutionCompleted
from ._events import ExecutionFailed as ExecutionFailed
from ._events import ExecutionPaused as ExecutionPaused
from ._events import ExecutionQueued as ExecutionQueued
from ._events import ExecutionResumed as ExecutionResumed
from ._events import ExecutionStarted as ExecutionStarted
from ._events import ExecutionSuspended as ExecutionSuspended
from ._events import ExecutionTimedOut as ExecutionTimedOut
from ._events import NodeCompleted as NodeCompleted
from ._events import NodeFailed as NodeFailed
from ._events import NodeRetrying as NodeRetrying
from ._events import NodeSkipped as NodeSkipped
from ._events import NodeStarted as NodeStarted
from ._events import NodeSuspended as NodeSuspended

__all__ = (
    "EXECUTION_ENDED",
    "Event",
    "EventsDropped",
    "ExecutionCancelled",
    "ExecutionCompleted",
    "ExecutionFailed",
    "ExecutionPaused",
    "ExecutionQueued",
    "ExecutionResumed",
    "ExecutionStarted",
    "ExecutionSuspended",
    "ExecutionTimedOut",
    "NodeCompleted",
    "NodeFailed",
    "NodeRetrying",
    "NodeSkipped",
    "NodeStarted",
    "NodeSuspended",
)
