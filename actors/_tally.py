"""What an engine has done, counted as it goes: node runs by outcome and how long
they took, and how long the store took to commit. Read through
:meth:`prana.Engine.statistics` (the daemon's ``/metrics`` shows them)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

import attrs

from prana._records import NodeResult

# Upper bounds, in seconds, of the buckets durations are counted in.
DURATION_BOUNDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
)  # fmt: skip


@attrs.frozen(kw_only=True)
class Durations:
    """How long things took, as a histogram: ``counts[i]`` took at most
    ``bounds[i]`` seconds (and more than the bound before), the last of ``counts``
    longer than every bound; ``total`` is the sum of them all, in seconds."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        """How many were counted."""
        return sum(self.counts)


class _Histogram:
    def __init__(self) -> None:
        self._counts = [0] * (len(DURATION_BOUNDS) + 1)
        self._total = 0.0

    def add(self, seconds: float) -> None:
        self._counts[bisect_left(DURATION_BOUNDS, seconds)] += 1
        self._total += seconds

    def durations(self) -> Durations:
        return Durations(bounds=DURATION_BOUNDS, counts=tuple(self._counts), total=self._total)


class Tally:
    """The counts of one engine; supervisors and the checkpoint writer add to them."""

    def __init__(self) -> None:
        self._node_runs = {"completed": 0, "failed": 0, "suspended": 0}
        self._node_run_times = _Histogram()
        self._commit_times = _Histogram()

    def node_ran(self, result: NodeResult) -> None:
        """A worker reported how a node run went."""
        if result.error is not None:
            outcome = "failed"
        elif result.suspend is not None:
            outcome = "suspended"
        else:
            outcome = "completed"
        self._node_runs[outcome] += 1
        if result.duration_ms is not None:
            self._node_run_times.add(result.duration_ms / 1000)

    def committed(self, seconds: float) -> None:
        """The store committed a transaction in ``seconds``."""
        self._commit_times.add(seconds)

    @property
    def node_runs(self) -> Mapping[str, int]:
        return dict(self._node_runs)

    @property
    def node_run_times(self) -> Durations:
        return self._node_run_times.durations()

    @property
    def commit_times(self) -> Durations:
        return self._commit_times.durations()
