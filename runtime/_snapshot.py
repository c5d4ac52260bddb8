"""Saving and restoring an execution: checkpoints, snapshots, routing state (DESIGN §4, §8).

``active_paths`` in a checkpoint is everything the state machine needs beyond the
audit trail, the variables and the node contexts to carry on exactly where it
stopped: each node's state in the current iteration, each settled edge (delivered,
by the execution index of the run that sent on it, or dead; keyed by edge index), the ready stack, the
runs in flight and waiting (with where their inputs came from), and the loops'
bookkeeping. It is JSON, it names runs instead of copying their outputs, and its
size depends on the workflow, never on how long the execution has run.

Counters (edges settled and delivered per node, nodes unsettled per loop) are not
saved: they follow from the edge and node states and are recomputed on restore. In
a large workflow the entries per node and per edge are saved in blocks, only those a
step changed (:mod:`._blocks`).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._blocks import BLOCKED_FORMAT, WHOLE_FORMAT, joined
from ._errors import InternalError
from ._flow import Flow
from ._json import copy_json
from ._records import (
    FINAL_STATUSES,
    Checkpoint,
    CheckpointKind,
    Execution,
    ExecutionStatus,
    NodeRun,
    StoredExecution,
    waiting_run,
)
from ._trail import RUNS_HELD
from ._wanted import RunsWanted

if TYPE_CHECKING:
    from ._compiler import ExecutionGraph
    from ._machine import ExecutionMachine

# Node states as the digits of the "nodes" string.
_DIGITS = bytes.maketrans(bytes(range(10)), b"0123456789")


_by_execution_index = operator.attrgetter("execution_index")


def dump_paths(machine: ExecutionMachine, *, whole: bool = False) -> dict[str, Any]:
    """The routing state of ``machine`` as JSON data (arrays as tuples, which the
    collector stops tracking once it sees they hold only numbers and strings).

    Always: ``nodes`` (one digit per node, its state), ``edges`` (per edge, the
    execution index of the run that sent on it, ``-1`` if dead, ``-2`` if open),
    ``run_counts`` and ``next`` (the next execution index); in a large workflow,
    unless ``whole``, the first three are in blocks (:meth:`Flow.dump_blocks`) and
    ``blocks`` says how many. The rest only when it holds something: a step of a
    long chain saves little more than its counters.
    """
    paths: dict[str, Any] = {}
    machine.flow.dump(paths, whole=whole)
    paths["next"] = machine.trail.next_index
    ready = machine.ready
    if ready:
        paths["ready"] = ready
    in_flight = machine.in_flight
    if in_flight:
        paths["running"] = tuple(
            (run.execution_index, run.node_key, run.run_index, run.attempt, run.inputs)
            for run in in_flight
        )
    if machine.waits:
        paths["waiting"] = {
            str(index): machine.trail[index].inputs for index in sorted(machine.waits)
        }
    if machine.pausing:  # a pause waiting for running nodes
        paths["pausing"] = True
    if machine.journal.sequence:
        paths["events"] = machine.journal.sequence
    return paths


def runs_wanted(graph: ExecutionGraph, stored: StoredExecution) -> RunsWanted | None:
    """Which of its saved runs ``stored`` (read without them) needs to go on, or
    ``None`` for all of them: one that ended, or whose state cannot be read here
    (restoring it says what is wrong)."""
    if stored.status not in ("running", "suspended", "paused"):
        return None
    paths = stored.active_paths
    if paths.get("format") not in (1, WHOLE_FORMAT, BLOCKED_FORMAT):
        return None
    try:
        paths = joined(paths, stored.paths_blocks)
        activation = {int(node): start for node, start in paths.get("activation", {}).items()}
        referenced = _referenced(paths)
        beside = paths.get("wanted")  # a waiting execution's (decision 0068)
        if beside is None:
            runs_of = tuple((wait.node_key, wait.run_index) for wait in stored.suspensions)
        else:
            referenced.update(int(index) for index in beside["latest"])
            runs_of = tuple((str(key), int(run_index)) for key, run_index in beside["retried"])
    except (KeyError, TypeError, ValueError):
        return None
    return RunsWanted(
        newest_from=max(0, int(paths["next"]) - RUNS_HELD),
        indexes=frozenset(referenced),
        runs_of=runs_of,
        collecting=tuple(
            (node.key, activation.get(node.index, 0))
            for node in graph.order
            if node.back_edges and node.action.collect_port is not None
        ),
        find_latest=beside is None,
    )


def _referenced(paths: Any) -> set[int]:
    """The runs a routing state (blocks joined) names: the flow's (:meth:`Flow.runs_named`),
    and the inputs of the runs in flight and waiting."""
    found = Flow.runs_named(paths)
    for *_, inputs in paths.get("running", ()):
        found.update(int(source) for _, source in inputs)
    for inputs in paths.get("waiting", {}).values():
        found.update(int(source) for _, source in inputs)
    return found


@attrs.frozen
class RestoredPaths:
    """What a saved routing state gives back to the machine itself, once its parts
    (flow, trail, waits, journal) have taken theirs."""

    in_flight: tuple[NodeRun, ...] = ()
    ready: tuple[int, ...] = ()
    pausing: bool = False


def restore_paths(machine: ExecutionMachine, stored: StoredExecution) -> RestoredPaths | None:
    """Give the parts of a freshly built ``machine`` the state a store kept.

    ``stored.runs`` are the ended runs of the audit trail; the runs in flight and
    waiting come from its routing state and suspensions. Raises
    :class:`InternalError` if the pieces do not fit together (a checkpoint that does
    not match its workflow). ``None`` for a completed execution: nothing is left to
    run.
    """
    paths = stored.active_paths
    runs, suspensions = stored.runs, stored.suspensions
    if stored.status == "completed" and "format" not in paths:
        _restore_completed(machine, stored)
        return None
    if paths.get("format") not in (1, WHOLE_FORMAT, BLOCKED_FORMAT):
        raise InternalError(f"unknown routing state format {paths.get('format')!r}")
    if paths["format"] != BLOCKED_FORMAT:
        machine.flow.all_changed()  # saved whole, by an earlier version
    try:
        paths = joined(paths, stored.paths_blocks)
    except (KeyError, TypeError) as exc:
        raise InternalError(
            f"the saved state of execution {machine.execution_id} is missing a block: {exc}"
        ) from None

    slots: list[NodeRun | None] = [None] * paths["next"]
    for run in runs:
        slots[run.execution_index] = run
    in_flight: list[NodeRun] = []
    for execution_index, node_key, run_index, attempt, inputs in paths.get("running", ()):
        if node_key not in machine.graph.index:
            raise InternalError(
                f"execution {machine.execution_id} was running unknown node {node_key!r}"
            )
        run = NodeRun(
            node_key=node_key,
            run_index=run_index,
            execution_index=execution_index,
            status="running",
            attempt=attempt,
            inputs=_tuples(inputs),
        )
        slots[execution_index] = run
        in_flight.append(run)
    for suspension in suspensions:
        inputs = paths.get("waiting", {}).get(str(suspension.execution_index), [])
        slots[suspension.execution_index] = waiting_run(suspension, runs, _tuples(inputs))
    machine.waits.restored(suspensions)
    if stored.all_runs:
        missing = [index for index, run in enumerate(slots) if run is None]
    else:  # the runs it needs only (RunsWanted): the others stay in the store
        missing = sorted(
            index for index in _referenced(paths) if index >= len(slots) or slots[index] is None
        )
    if missing:
        raise InternalError(
            f"execution {machine.execution_id} is missing node runs {missing[:5]} of its audit trail"
        )
    trail = machine.trail
    trail.restored((run for run in slots if run is not None), len(slots))
    for run in trail:
        if run.status in ("completed", "failed"):
            trail.restored_latest(machine.graph.index[run.node_key], run)
    try:
        machine.flow.restore(paths, trail, trail.__getitem__)
    except InternalError as exc:
        raise InternalError(f"execution {machine.execution_id}: {exc}") from None
    _restore_journal(machine, paths.get("events", 0))
    return RestoredPaths(
        in_flight=tuple(in_flight),
        ready=tuple(paths.get("ready", ())),
        pausing=bool(paths.get("pausing")),
    )


def _restore_completed(machine: ExecutionMachine, stored: StoredExecution) -> None:
    """A completed execution, whose checkpoint kept only the nodes it skipped
    (:func:`kept_paths`): its audit trail and outcome, nothing left to run."""
    runs = sorted(stored.runs, key=_by_execution_index)
    trail = machine.trail
    trail.restored(runs, runs[-1].execution_index + 1 if runs else 0)
    for run in runs:
        if run.status in ("completed", "failed"):
            trail.restored_latest(machine.graph.index[run.node_key], run)
    machine.flow.restore_completed(runs, stored.active_paths.get("skipped", ()))
    _restore_journal(machine, stored.active_paths.get("events", 0))


def _restore_journal(machine: ExecutionMachine, sequence: int) -> None:
    """The number of the last event, and the nodes that had settled (ended a run or
    been skipped), as the execution's events go on from them."""
    settled = [run.node_key for run in machine.trail.latest_runs()]
    machine.journal.restored(sequence, [*settled, *machine.flow.skipped])


def _tuples(pairs: Sequence[Sequence[Any]]) -> tuple[tuple[str, int], ...]:
    return tuple((str(port), int(source)) for port, source in pairs)


def snapshot(machine: ExecutionMachine) -> Execution:
    """The execution as a user sees it now.

    While the execution goes on (or may: a waiting one), its data is the caller's own
    copy: the machine routes and renders templates with the same objects, and a
    caller that changed them in place would change what later nodes see."""
    workflow = machine.graph.workflow
    if machine.status in FINAL_STATUSES:
        input, vars = machine.input, dict(machine.vars)
        runs, suspensions = tuple(machine.trail), tuple(machine.suspensions)
    else:
        input, vars = copy_json(machine.input), copy_json(dict(machine.vars))
        runs = tuple(run.private_copy() for run in machine.trail)
        suspensions = tuple(suspension.private_copy() for suspension in machine.suspensions)
    return Execution(
        id=machine.execution_id,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        status=machine.status,
        trigger=machine.graph.trigger,
        input=input,
        vars=vars,
        node_runs=runs,
        runs_left_out=machine.trail.left_out,
        skipped=tuple(machine.never_ran()),
        suspensions=suspensions,
        error=machine.error,
        started_at=machine.started_at,
        finished_at=machine.finished_at,
        iteration_count=machine.flow.iteration_count,
        execution_data=execution_data(machine),
        deadline=machine.deadline,
        parent_execution_id=machine.parent_execution_id,
        root_execution_id=machine.root_execution_id,
        mode=machine.mode,
        last_event=machine.journal.sequence,
        concurrency_key=machine.queue_place.key if machine.queue_place is not None else None,
        priority=machine.queue_place.priority if machine.queue_place is not None else 0,
    )


def execution_data(machine: ExecutionMachine) -> dict[str, Any]:
    """The persistent working state (seed 000): contexts, active nodes and paths."""
    active = {run.node_key: run.run_index for run in machine.in_flight}
    active |= {suspension.node_key: suspension.run_index for suspension in machine.waits.in_order()}
    return {
        "context_data": {
            "workflow": copy_json(dict(machine.vars)),
            "node": copy_json(machine.contexts.copy()),
        },
        "active_nodes": active,
        "active_paths": dump_paths(machine, whole=True),
        "iteration_count": machine.flow.iteration_count,
    }


def has_unsaved_changes(machine: ExecutionMachine) -> bool:
    """Whether a checkpoint of ``machine`` now would save anything new."""
    return bool(
        not machine.saved
        or machine.saved_status != machine.status
        or machine.trail.has_unsaved
        or machine.waits.has_changes
        or machine.vars_changed
        or machine.contexts.has_changes
    )


def kept_paths(machine: ExecutionMachine) -> dict[str, Any]:
    """The routing state a checkpoint keeps: all of it, but for a completed execution
    only the nodes it skipped (nothing will run again, so nothing else is needed)."""
    if machine.status == "completed":
        return {"skipped": machine.flow.skipped, "events": machine.journal.sequence}
    paths = dump_paths(machine)
    if machine.status in ("suspended", "paused"):
        paths["wanted"] = _wanted_beside(machine)
    return paths


def _wanted_beside(machine: ExecutionMachine) -> dict[str, Any]:
    """What waking the execution reads beside the runs its routing state names
    (decision 0068), so that the store need not look for them among all its runs:
    ``latest``, each node's latest ended and latest completed run; ``retried``, the
    waiting runs (node key, run index) tried before, whose earlier attempts give
    their attempt number."""
    trail = machine.trail
    latest = {run.execution_index for run in trail.latest_runs()}
    failed = {run.node_key for run in trail.latest_runs() if run.status != "completed"}
    if failed:  # their latest completed run, if any, came before (and is held)
        completed: dict[str, int] = {}
        for run in trail:
            if run.node_key in failed and run.status == "completed":
                completed[run.node_key] = max(run.execution_index, completed.get(run.node_key, -1))
        latest.update(completed.values())
    retried = []
    for index in sorted(machine.waits):
        run = trail[index]
        if run.attempt > 1:
            retried.append((run.node_key, run.run_index))
    return {"latest": tuple(sorted(latest)), "retried": tuple(retried)}


def checkpoint_kind(
    machine: ExecutionMachine, take_from: ExecutionStatus | None, clear_request: bool
) -> CheckpointKind:
    """What a store is to do with the next checkpoint (see :class:`Checkpoint`)."""
    if not machine.saved:
        return "start"
    if take_from is not None:
        return "take"
    if (
        machine.status != "running"
        or machine.saved_status != machine.status
        or machine.vars_changed
        or clear_request
    ):
        return "change"
    return "step"


def checkpoint_of(
    machine: ExecutionMachine,
    kind: CheckpointKind,
    *,
    take_from: ExecutionStatus | None,
    clear_request: bool,
) -> Checkpoint:
    """A checkpoint of ``kind``: what changed in ``machine`` since its last one, which
    its parts then count as saved (the machine marks itself saved)."""
    workflow = machine.graph.workflow
    contexts, dropped = machine.contexts.take_changes()
    added, removed = machine.waits.take_changes()
    return Checkpoint(
        execution_id=machine.execution_id,
        kind=kind,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        workflow_hash=machine.graph.hash,
        status=machine.status,
        trigger=machine.graph.trigger,
        input=machine.input,
        status_changed=machine.saved_status != machine.status,
        active_paths=kept_paths(machine),
        paths_blocks=machine.flow.dump_blocks(
            every=kind == "start", completed=machine.status == "completed"
        ),
        iteration_count=machine.flow.iteration_count,
        vars=dict(machine.vars) if machine.vars_changed or kind == "start" else None,
        node_contexts=contexts,
        node_context_drops=dropped,
        error=machine.error,
        started_at=machine.started_at,
        finished_at=machine.finished_at,
        runs=machine.trail.unsaved(),
        suspensions_added=added,
        suspensions_removed=removed,
        parent_execution_id=machine.parent_execution_id,
        root_execution_id=machine.root_execution_id,
        mode=machine.mode,
        depth=machine.depth,
        deadline=machine.deadline,
        take_from=take_from or machine.status,
        revision=machine.revision,
        clear_request=clear_request,
        queue=machine.queue_place if kind == "start" else None,
    )


def forget_saved_runs(machine: ExecutionMachine) -> None:
    """Let go of the saved runs the execution's next steps do not need (decision 0045).

    Called as a checkpoint is taken, when the machine holds more than twice what it
    needed last time. A supervisor waits for each save before its next step, so every
    run but the ones this checkpoint carries is in the store already. Kept: those;
    the latest :data:`RUNS_HELD` runs; the runs in flight or waiting, with the runs
    whose outputs are their inputs; each node's latest ended and latest completed
    run (templates, ``Execution.outputs``, a retry); a collecting loop entry's runs
    of its current activation, with what came back to them. A long loop's live
    execution then holds what its next steps need, whatever the number of
    iterations.
    """
    runs = machine.trail
    keep = runs.unsaved_indexes()

    def with_sources(run: NodeRun) -> None:
        keep.add(run.execution_index)
        keep.update(source for _, source in run.inputs)

    for run in machine.in_flight:
        with_sources(run)
    for execution_index in machine.waits:
        with_sources(runs[execution_index])
    for latest in runs.latest_runs():
        with_sources(latest)  # a retry of the execution runs it again
    for index in machine.flow.collecting():
        for entry in machine.flow.collected(index):
            with_sources(runs[entry])
    completed: set[str] = set()
    for position, run in enumerate(runs.newest_first()):
        if position < RUNS_HELD:
            keep.add(run.execution_index)
        if run.status == "completed" and run.node_key not in completed:
            completed.add(run.node_key)
            keep.add(run.execution_index)
    runs.keep_only(keep)
