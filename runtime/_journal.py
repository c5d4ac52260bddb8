"""The journal: the public events of one execution, as its machine makes them (DESIGN §9).

The machine says what happened by adding :mod:`prana.events` to the commands it
returns, in order with the work to carry out; its supervisor publishes them once the
step that made them is saved. Events are numbered per execution, 1, 2, ... with no
gaps, and the number is saved with the execution: it goes on where it stopped when
the execution is restored, in this engine or another.

Building an event costs more than the rest of some steps, so an event is built only
while someone listens (:meth:`Journal.listen`); it is numbered either way, so the
numbers do not depend on who listened when. An execution's end is always built: its
supervisor tells a waiting parent from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import _events as events
from ._records import ErrorInfo, ExecutionStatus, NodeRun, QueuePlace, Suspension

ENDED = events.EXECUTION_ENDED


class Journal:
    """Numbers and builds one execution's events; knows which nodes have settled
    (finished or been skipped at least once), for ``progress``."""

    __slots__ = ("_listening", "_node_count", "_settled", "execution_id", "sequence")

    def __init__(self, execution_id: str, node_count: int) -> None:
        self.execution_id = execution_id
        # Whether anyone listens (see :meth:`listen`): until told, everyone might.
        self._listening: Callable[[], bool] = _always
        self.sequence = 0  # the number of the last event
        self._node_count = node_count
        self._settled: set[str] = set()

    def listen(self, listening: Callable[[], bool]) -> None:
        """From now on, build each event only if ``listening()`` says someone listens
        (whoever publishes the events tells, once)."""
        self._listening = listening

    def restored(self, sequence: int, settled: Iterable[str]) -> None:
        """Carry on from a saved execution: its last event's number, the nodes that
        had settled."""
        self.sequence = sequence
        self._settled = set(settled)

    # ------------------------------------------------------------------ events
    # Each numbers its event, and builds it into ``into`` only if someone listens.

    def started(self, into: list[Any], now: float, workflow_id: str, version: int) -> None:
        if self._next():
            into.append(
                events.ExecutionStarted(
                    **self._header(now),
                    workflow_id=workflow_id,
                    workflow_version=version,
                    node_count=self._node_count,
                )
            )

    def queued(
        self, into: list[Any], now: float, workflow_id: str, version: int, place: QueuePlace
    ) -> None:
        if self._next():
            into.append(
                events.ExecutionQueued(
                    **self._header(now),
                    workflow_id=workflow_id,
                    workflow_version=version,
                    concurrency_key=place.key,
                    priority=place.priority,
                )
            )

    def node_started(self, into: list[Any], now: float, run: NodeRun) -> None:
        if self._next():
            into.append(
                events.NodeStarted(
                    **self._header(now),
                    node_key=run.node_key,
                    run_index=run.run_index,
                    execution_index=run.execution_index,
                )
            )

    def run_ended(self, into: list[Any], now: float, run: NodeRun) -> None:
        """A run completed, failed or was cancelled."""
        self._settled.add(run.node_key)
        if self._next():
            kind = events.NodeCompleted if run.status == "completed" else events.NodeFailed
            into.append(
                kind(**self._header(now), node_key=run.node_key, run=run, progress=self.progress)
            )

    def retrying(
        self, into: list[Any], now: float, failed: NodeRun, next_attempt: int, at: float
    ) -> None:
        if self._next():
            into.append(
                events.NodeRetrying(
                    **self._header(now),
                    node_key=failed.node_key,
                    run=failed,
                    next_attempt=next_attempt,
                    at=at,
                )
            )

    def skipped(self, into: list[Any], now: float, node_key: str) -> None:
        self._settled.add(node_key)
        if self._next():
            into.append(
                events.NodeSkipped(**self._header(now), node_key=node_key, progress=self.progress)
            )

    def node_suspended(self, into: list[Any], now: float, suspension: Suspension) -> None:
        if self._next():
            into.append(
                events.NodeSuspended(
                    **self._header(now), node_key=suspension.node_key, suspension=suspension
                )
            )

    def suspended(self, into: list[Any], now: float, suspensions: tuple[Suspension, ...]) -> None:
        if self._next():
            into.append(events.ExecutionSuspended(**self._header(now), suspensions=suspensions))

    def paused(self, into: list[Any], now: float) -> None:
        if self._next():
            into.append(events.ExecutionPaused(**self._header(now)))

    def resumed(self, into: list[Any], now: float, cause: str) -> None:
        if self._next():
            into.append(events.ExecutionResumed(**self._header(now), cause=cause))

    def ended(
        self, into: list[Any], now: float, status: ExecutionStatus, error: ErrorInfo | None
    ) -> None:
        """The execution reached a final status: built whether or not anyone listens."""
        self._next()
        if status == "completed":
            into.append(events.ExecutionCompleted(**self._header(now)))
        elif status == "cancelled":
            into.append(events.ExecutionCancelled(**self._header(now), error=error))
        elif status == "timed_out":
            into.append(events.ExecutionTimedOut(**self._header(now), error=error))
        else:
            into.append(events.ExecutionFailed(**self._header(now), error=error, status=status))

    @property
    def progress(self) -> float:
        """The share of the nodes that have settled, from 0.0 to 1.0."""
        return len(self._settled) / self._node_count if self._node_count else 1.0

    def _next(self) -> bool:
        """Number the next event; whether to build it."""
        self.sequence += 1
        return self._listening()

    def _header(self, now: float) -> dict[str, Any]:
        return {"execution_id": self.execution_id, "sequence": self.sequence, "time": now}


def _always() -> bool:
    return True
