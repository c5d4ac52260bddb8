"""Words and errors about waits that the machine and the engine share (DESIGN §5.3, §5.5).

The rules of waiting (a node suspends, a timer or a resume ends its wait, a retry
waits for its backoff, a ``sync`` child's end completes its parent's node) are the
machine's own (:class:`prana._machine.ExecutionMachine`); what is here is what the
engine needs to know of them too.
"""

from __future__ import annotations

from ._errors import InvalidTransition
from ._records import ChildOutcome


class WaitTimedOut(InvalidTransition):
    """A resume came for a wait whose timeout has passed: it is refused, and the wait
    ends through its timeout (``execution_index`` says which wait), as its timer
    would end it."""

    def __init__(self, message: str, *, execution_index: int) -> None:
        super().__init__(message)
        self.execution_index = execution_index


# How an execution that did not complete ended, in words.
ENDED_HOW = {"failed": "failed", "cancelled": "was cancelled", "timed_out": "timed out"}
# Waits that only the engine ends: a retry's backoff, a child execution.
NOT_RESUMABLE = ("retry", "workflow")


def ended_how(outcome: ChildOutcome) -> str:
    """How a child execution that did not complete ended, in words (with its error)."""
    text = ENDED_HOW.get(outcome.status, outcome.status)
    if outcome.error is not None:
        text += f": {outcome.error.message}"
    return text
