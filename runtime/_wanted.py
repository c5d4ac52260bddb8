"""Which of its saved runs a store reads to restore an execution that goes on
(decision 0066): the selection, and the store's side of it for runs kept in memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from ._records import NodeRun, StoredExecution


@attrs.frozen(kw_only=True)
class RunsWanted:
    """The saved runs a store reads to restore an execution that goes on (decision
    0066): what ``_snapshot.forget_saved_runs`` would keep. Every run from execution index
    ``newest_from`` on; if ``find_latest``, each node's latest ended run and latest
    completed run (else ``indexes`` has them: a waiting execution's state names them);
    the runs ``indexes`` (those the routing state names); every record of the runs
    ``runs_of`` (node key, run index: a wait's earlier attempts); for each of
    ``collecting`` (node key, run index), the node's runs with a greater run index
    (a collecting loop entry's current pass). And then the runs the inputs of all
    of those came from."""

    newest_from: int
    indexes: frozenset[int] = frozenset()
    runs_of: tuple[tuple[str, int], ...] = ()
    collecting: tuple[tuple[str, int], ...] = ()
    find_latest: bool = True

    def pick(self, runs: Mapping[int, NodeRun]) -> list[NodeRun]:
        """The runs wanted of ``runs`` (all of an execution's, by execution index),
        in execution index order: what a store that keeps runs in memory reads."""
        chosen = {index for index in runs if index >= self.newest_from} | self.indexes
        latest: dict[tuple[str, bool], int] = {}
        runs_of, after = set(self.runs_of), dict(self.collecting)
        for index, run in runs.items():
            if self.find_latest and run.status in ("completed", "failed"):
                latest[run.node_key, False] = max(index, latest.get((run.node_key, False), -1))
                if run.status == "completed":
                    latest[run.node_key, True] = max(index, latest.get((run.node_key, True), -1))
            if (run.node_key, run.run_index) in runs_of or run.run_index > after.get(
                run.node_key, run.run_index
            ):
                chosen.add(index)
        chosen.update(latest.values())
        chosen &= runs.keys()
        chosen |= {source for index in chosen for _, source in runs[index].inputs if source in runs}
        return [runs[index] for index in sorted(chosen)]


# None of the runs: an execution read for its own fields alone (what it was started
# with, say), however long its trail.
NO_RUNS = RunsWanted(newest_from=2**62, find_latest=False)

# Told an execution as stored, read without its runs, which of them to read (``None``:
# every one). The store calls it within the read, so that the runs fit the state.
RunsSelector = Callable[[StoredExecution], RunsWanted | None]
