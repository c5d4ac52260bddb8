"""The wait list: the runs of one execution that wait, a part of its state machine.

A run waits (is suspended) to be resumed, for a timer, for a retry's backoff or for
a child execution; :mod:`prana._waiting` has the rules of how waits begin and end,
and this object keeps the waits themselves, with what changed since the last
checkpoint (a checkpoint saves only that). It also keeps the outcomes of children
that ended before their parent's node said it waits for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ._records import ChildOutcome, Suspension


class WaitList:
    """The waits of one execution, by the execution index of the waiting run."""

    __slots__ = ("_added", "_early", "_removed", "_waits")

    def __init__(self) -> None:
        self._waits: dict[int, Suspension] = {}
        self._added: list[Suspension] = []
        self._removed: list[int] = []
        # Outcomes of children whose parent node has not reported it waits yet.
        self._early: dict[str, ChildOutcome] = {}

    def __bool__(self) -> bool:
        return bool(self._waits)

    def __contains__(self, execution_index: int) -> bool:
        return execution_index in self._waits

    def __iter__(self) -> Iterator[int]:
        """The execution indexes of the waiting runs."""
        return iter(self._waits)

    def get(self, execution_index: int) -> Suspension | None:
        return self._waits.get(execution_index)

    def in_order(self) -> list[Suspension]:
        """The waits, in the order their runs started (by execution index)."""
        return [self._waits[index] for index in sorted(self._waits)]

    def for_child(self, child_execution_id: str) -> Suspension | None:
        """The wait for that child execution, if any."""
        for suspension in self._waits.values():
            if suspension.child_execution_id == child_execution_id:
                return suspension
        return None

    # ------------------------------------------------------------------ changes

    def add(self, suspension: Suspension) -> None:
        """A run begins to wait (a new wait of a run replaces its old one)."""
        self._waits[suspension.execution_index] = suspension
        self._added.append(suspension)

    def remove(self, execution_index: int) -> Suspension | None:
        """A run stops waiting; its wait, if it had one."""
        suspension = self._waits.pop(execution_index, None)
        if suspension is not None:
            self._removed.append(execution_index)
        return suspension

    def restored(self, suspensions: Iterable[Suspension]) -> None:
        """The waits a store kept: nothing to save about them."""
        for suspension in suspensions:
            self._waits[suspension.execution_index] = suspension

    @property
    def has_changes(self) -> bool:
        return bool(self._added or self._removed)

    @property
    def has_new(self) -> bool:
        """Whether a run began to wait since the last checkpoint."""
        return bool(self._added)

    def take_changes(self) -> tuple[tuple[Suspension, ...], tuple[int, ...]]:
        """The waits added and removed since the last checkpoint (for the next)."""
        changes = tuple(self._added), tuple(self._removed)
        self._added.clear()
        self._removed.clear()
        return changes

    # ------------------------------------------------------------------ early outcomes

    def keep_early(self, outcome: ChildOutcome) -> None:
        """A child ended before its parent's node said it waits for it: kept until it
        does (its run is still in flight)."""
        self._early[outcome.child_execution_id] = outcome

    def take_early(self, child_execution_id: str) -> ChildOutcome | None:
        return self._early.pop(child_execution_id, None)

    def forget_early(self) -> None:
        """Nothing is in flight any more: no node will say it waits for those."""
        self._early.clear()
