"""The trail: the node runs of one execution as its machine holds them, a part of its
state machine.

Every run has an execution index, given in dispatch order; the trail keeps each
run's latest record by that index, the records changed since the last checkpoint (a
checkpoint saves those), and each node's latest ended run. A long execution's
machine holds only the runs its next steps need: the others are in the store
(decision 0045, :meth:`Trail.keep_only`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ._records import NodeRun

# How many of its latest runs a live execution holds at least; past twice that, the
# older saved ones are left to the store.
RUNS_HELD = 100


class Trail:
    """The runs of one execution, by execution index."""

    __slots__ = ("_allowed", "_latest", "_runs", "_unsaved", "next_index")

    def __init__(self, node_count: int) -> None:
        self._runs: dict[int, NodeRun] = {}
        self._unsaved: list[NodeRun] = []
        self._latest: list[NodeRun | None] = [None] * node_count
        self._allowed = 2 * RUNS_HELD
        self.next_index = 0  # the execution index of the next run

    def __getitem__(self, execution_index: int) -> NodeRun:
        return self._runs[execution_index]

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[NodeRun]:
        """The runs held, by execution index."""
        return iter(self._runs.values())

    def newest_first(self) -> Iterator[NodeRun]:
        return reversed(self._runs.values())

    def latest(self, node_index: int) -> NodeRun | None:
        """The node's latest run that completed or failed."""
        return self._latest[node_index]

    def latest_runs(self) -> Iterator[NodeRun]:
        """Each node's latest run that completed or failed, for the nodes that have one."""
        return (run for run in self._latest if run is not None)

    @property
    def left_out(self) -> int:
        """How many runs are in the store but not held here."""
        return self.next_index - len(self._runs)

    # ------------------------------------------------------------------ changes

    def new_index(self) -> int:
        """The execution index of a run about to start."""
        index = self.next_index
        self.next_index = index + 1
        return index

    def put(self, run: NodeRun) -> None:
        """A run's state in memory (running, waiting): saved with the routing state,
        not as a record of its own."""
        self._runs[run.execution_index] = run

    def record(self, run: NodeRun) -> None:
        """A run's record that the next checkpoint saves (ended, retried, cancelled)."""
        self._runs[run.execution_index] = run
        self._unsaved.append(run)

    def ended(self, node_index: int, run: NodeRun) -> None:
        """A run completed or failed: recorded, and the node's latest."""
        self.record(run)
        self._latest[node_index] = run

    def restored(self, runs: Iterable[NodeRun], next_index: int) -> None:
        """The runs a store kept (in execution index order), with the index of the next;
        each node's latest ended run is set with :meth:`restored_latest`."""
        self._runs = {run.execution_index: run for run in runs}
        self.next_index = next_index

    def restored_latest(self, node_index: int, run: NodeRun) -> None:
        self._latest[node_index] = run

    def all_unsaved(self) -> None:
        """Every run held is to be saved (a new execution made in a state)."""
        self._unsaved = list(self._runs.values())

    # ------------------------------------------------------------------ checkpoints

    @property
    def has_unsaved(self) -> bool:
        return bool(self._unsaved)

    def unsaved(self) -> tuple[NodeRun, ...]:
        """The records changed since the last checkpoint."""
        return tuple(self._unsaved)

    def unsaved_indexes(self) -> set[int]:
        return {run.execution_index for run in self._unsaved}

    @property
    def holds_too_many(self) -> bool:
        """Whether it holds more than twice the runs it needed when it last let go."""
        return len(self._runs) > self._allowed

    def saved(self) -> None:
        """The records changed were saved. (Emptied in place: a checkpoint per step,
        with thousands of executions in flight, should leave little for the garbage
        collector.)"""
        self._unsaved.clear()

    def keep_only(self, keep: set[int]) -> None:
        """Let go of every saved run but those (the store has them)."""
        self._runs = {index: run for index, run in self._runs.items() if index in keep}
        self._allowed = 2 * max(RUNS_HELD, len(keep))
