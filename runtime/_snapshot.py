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
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._blocks import BLOCK_BITS, BLOCKED_FORMAT, WHOLE_FORMAT, joined
from ._errors import InternalError
from ._flow import DEAD, DELIVERED, DONE, OPEN, OPEN_REF, SKIPPED
from ._records import (
    Checkpoint,
    CheckpointKind,
    Execution,
    ExecutionStatus,
    NodeRun,
    StoredExecution,
    waiting_run,
)
from ._trail import RUNS_HELD

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
    unless ``whole``, the first three are in blocks (:func:`dump_blocks`) and
    ``blocks`` says how many. The rest only when it holds something: a step of a
    long chain saves little more than its counters.
    """
    paths: dict[str, Any]
    if machine._blocks and not whole:
        paths = {
            "format": BLOCKED_FORMAT,
            "blocks": machine._blocks,
            "next": machine.trail.next_index,
        }
    else:
        paths = {
            "format": WHOLE_FORMAT,
            "nodes": machine._state.translate(_DIGITS).decode(),
            "edges": tuple(machine._edge_refs),
            "run_counts": tuple(machine._run_counts),
            "next": machine.trail.next_index,
        }
    if machine._ready:
        paths["ready"] = list(machine._ready)
    if machine._running or machine._redispatch:
        in_flight = [*machine._running.values(), *machine._redispatch.values()]
        if len(in_flight) > 1:
            in_flight.sort(key=_by_execution_index)
        paths["running"] = tuple(
            (run.execution_index, run.node_key, run.run_index, run.attempt, run.inputs)
            for run in in_flight
        )
    if machine.waits:
        paths["waiting"] = {
            str(index): machine.trail[index].inputs for index in sorted(machine.waits)
        }
    if any(machine._exit_buffer):
        paths["exits"] = {
            str(loop): {str(edge): run.execution_index for edge, run in buffer.items()}
            for loop, buffer in enumerate(machine._exit_buffer)
            if buffer
        }
    if machine._loop_inputs:
        paths["loop_inputs"] = {
            str(node): [[edge.index, run.execution_index] for edge, run in entries]
            for node, entries in machine._loop_inputs.items()
        }
    if machine._activation:
        paths["activation"] = {
            str(node): run_index for node, run_index in machine._activation.items()
        }
    if machine._skipped:
        paths["skipped"] = list(machine._skipped)
    # Rarely anything: work left when the execution failed mid-event, kept so that a
    # retry carries on exactly; and a pause waiting for running nodes.
    if machine._to_skip:
        paths["to_skip"] = list(machine._to_skip)
    if machine._quiescent:
        paths["quiescent"] = list(machine._quiescent)
    if machine._activated:
        paths["activated"] = list(machine._activated)
    if machine._pausing:
        paths["pausing"] = True
    if machine.journal.sequence:
        paths["events"] = machine.journal.sequence
    return paths


def dump_blocks(machine: ExecutionMachine, kind: CheckpointKind) -> dict[int, Any]:
    """The blocks of the routing state a checkpoint of ``kind`` saves: none in a
    small workflow; all of them first; then those changed since the last checkpoint;
    and once the execution has completed, every one, as ``None`` (nothing will run
    again: the store drops them)."""
    changed = machine._blocks_changed
    count = machine._blocks
    if not count:
        changed.clear()
        return {}
    if machine.status == "completed":
        changed.clear()
        return {} if kind == "start" else dict.fromkeys(range(count))
    numbers = range(count) if kind == "start" else sorted(changed)
    changed.clear()
    states, edges, run_counts = machine._state, machine._edge_refs, machine._run_counts
    blocks: dict[int, Any] = {}
    for number in numbers:
        start = number << BLOCK_BITS
        end = start + (1 << BLOCK_BITS)
        blocks[number] = {
            "nodes": states[start:end].translate(_DIGITS).decode(),
            "edges": tuple(edges[start:end]),
            "run_counts": tuple(run_counts[start:end]),
        }
    return blocks


def restore(machine: ExecutionMachine, stored: StoredExecution, *, new: bool = False) -> None:
    """Put a freshly built machine back in the state a store kept.

    ``stored.runs`` are the ended runs of the audit trail; the runs in flight and
    waiting come from its routing state and suspensions. Raises
    :class:`InternalError` if the pieces do not fit together (a checkpoint that does
    not match its workflow). With ``new``, the machine is a new execution in that
    state: its first checkpoint starts it in the store, with every run, variable and
    context field it holds (a rerun, :mod:`prana._rerun`).
    """
    paths = stored.active_paths
    runs, suspensions = stored.runs, stored.suspensions
    graph = machine.graph
    if stored.status == "completed" and "format" not in paths:
        _restore_completed(machine, stored)
        return
    if paths.get("format") not in (1, WHOLE_FORMAT, BLOCKED_FORMAT):
        raise InternalError(f"unknown routing state format {paths.get('format')!r}")
    if paths["format"] != BLOCKED_FORMAT and machine._blocks:
        # Saved whole, by an earlier version: the next checkpoint saves every block.
        machine._blocks_changed.update(range(machine._blocks))
    try:
        paths = joined(paths, stored.paths_blocks)
    except (KeyError, TypeError) as exc:
        raise InternalError(
            f"the saved state of execution {machine.execution_id} is missing a block: {exc}"
        ) from None
    states = [int(char) for char in paths["nodes"]]
    if len(states) != len(graph.order) or len(paths["run_counts"]) != len(graph.order):
        raise InternalError(
            f"the saved state of execution {machine.execution_id} does not match its workflow"
        )
    _restore_header(machine, stored)

    slots: list[NodeRun | None] = [None] * paths["next"]
    for run in runs:
        slots[run.execution_index] = run
    for execution_index, node_key, run_index, attempt, inputs in paths.get("running", ()):
        if node_key not in machine._index:
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
        machine._redispatch[execution_index] = run
    for suspension in suspensions:
        inputs = paths.get("waiting", {}).get(str(suspension.execution_index), [])
        slots[suspension.execution_index] = waiting_run(suspension, runs, _tuples(inputs))
    machine.waits.restored(suspensions)
    missing = [index for index, run in enumerate(slots) if run is None]
    if missing:
        raise InternalError(
            f"execution {machine.execution_id} is missing node runs {missing[:5]} of its audit trail"
        )
    machine.trail.restored((run for run in slots if run is not None), len(slots))
    activation = {int(node): start for node, start in paths.get("activation", {}).items()}
    for run in machine.trail:
        if run.status == "retried":
            continue  # an attempt that failed; the run goes on under a later index
        index = machine._index[run.node_key]
        node = machine._nodes[index]
        if (
            node.back_edges
            and node.action.collect_port is not None
            and run.run_index > activation.get(index, 0)
        ):
            machine._entry_runs.setdefault(index, []).append(run.execution_index)
        if run.status in ("completed", "failed"):
            machine.trail.restored_latest(index, run)

    machine._state = bytearray(states)
    machine._run_counts = array("l", paths["run_counts"])
    machine._ready = list(paths.get("ready", ()))
    machine._activation = activation
    machine._skipped = dict.fromkeys(paths.get("skipped", ()))
    machine._to_skip.extend(paths.get("to_skip", ()))
    machine._quiescent.extend(paths.get("quiescent", ()))
    machine._activated.extend(paths.get("activated", ()))
    machine._pausing = bool(paths.get("pausing"))
    edges = paths["edges"]
    if isinstance(edges, dict):  # format 1: only the settled edges, by index
        edges = [edges.get(str(position), OPEN_REF) for position in range(len(graph.edges))]
    if len(edges) != len(graph.edges):
        raise InternalError(
            f"the saved state of execution {machine.execution_id} does not match its workflow"
        )
    for position, source in enumerate(edges):
        if source == OPEN_REF:
            continue
        machine._edge_refs[position] = source
        if source < 0:
            machine._edge_state[position] = DEAD
        else:
            machine._edge_state[position] = DELIVERED
            machine._edge_run[position] = machine.trail[source]
    for loop, buffer in paths.get("exits", {}).items():
        machine._exit_buffer[int(loop)] = {
            int(edge): machine.trail[source] for edge, source in buffer.items()
        }
    machine._loop_inputs = {
        int(node): [(graph.edges[edge], machine.trail[source]) for edge, source in entries]
        for node, entries in paths.get("loop_inputs", {}).items()
    }
    _recount(machine, graph)
    _restore_journal(machine, 0 if new else paths.get("events", 0))
    if new:
        machine.settle_made_state()
        machine._saved = False
        machine._saved_status = None
        machine.trail.all_unsaved()
        machine._vars_changed = True
        machine.contexts.restored(stored.node_contexts, unsaved=True)
        machine._blocks_changed.update(range(machine._blocks))


def _restore_header(machine: ExecutionMachine, stored: StoredExecution) -> None:
    """What every restored machine takes from the store, whatever its routing state."""
    machine.deadline = stored.deadline
    machine.revision = stored.revision
    machine.status = stored.status
    machine.error = stored.error
    machine.started_at = stored.started_at
    machine.finished_at = stored.finished_at
    machine.iteration_count = stored.iteration_count
    machine.contexts.restored(stored.node_contexts, unsaved=False)
    machine._vars_changed = False
    machine._saved = True


def _restore_completed(machine: ExecutionMachine, stored: StoredExecution) -> None:
    """A completed execution, whose checkpoint kept only the nodes it skipped
    (:func:`kept_paths`): its audit trail and outcome, nothing left to run."""
    _restore_header(machine, stored)
    machine._saved_status = stored.status
    runs = sorted(stored.runs, key=_by_execution_index)
    machine.trail.restored(runs, runs[-1].execution_index + 1 if runs else 0)
    for run in runs:
        index = machine._index[run.node_key]
        machine._run_counts[index] = max(machine._run_counts[index], run.run_index + 1)
        if run.status in ("completed", "failed"):
            machine.trail.restored_latest(index, run)
            machine._state[index] = DONE
    machine._skipped = dict.fromkeys(stored.active_paths.get("skipped", ()))
    for key in machine._skipped:
        index = machine._index[key]
        if machine._state[index] != DONE:
            machine._state[index] = SKIPPED
    _restore_journal(machine, stored.active_paths.get("events", 0))


def _restore_journal(machine: ExecutionMachine, sequence: int) -> None:
    """The number of the last event, and the nodes that had settled (ended a run or
    been skipped), as the execution's events go on from them."""
    settled = [run.node_key for run in machine.trail.latest_runs()]
    machine.journal.restored(sequence, [*settled, *machine._skipped])


def _recount(machine: ExecutionMachine, graph: ExecutionGraph) -> None:
    """Edges settled and delivered per node, nodes unsettled per loop: one pass."""
    edge_state = machine._edge_state
    index_of = machine._index
    for edge in graph.edges:
        state = edge_state[edge.index]
        if state == OPEN:
            continue
        target = index_of[edge.target]
        if edge.loop_back:
            machine._back_settled[target] += 1
            machine._back_delivered[target] += state == DELIVERED
        else:
            machine._settled[target] += 1
            machine._delivered[target] += state == DELIVERED
    states = machine._state
    for loop in graph.loops:
        machine._unsettled[loop.id] = sum(
            states[index_of[key]] not in (DONE, SKIPPED) for key in loop.nodes
        )


def _tuples(pairs: Sequence[Sequence[Any]]) -> tuple[tuple[str, int], ...]:
    return tuple((str(port), int(source)) for port, source in pairs)


def snapshot(machine: ExecutionMachine) -> Execution:
    """The execution as a user sees it now."""
    workflow = machine.graph.workflow
    return Execution(
        id=machine.execution_id,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        status=machine.status,
        trigger=machine.graph.trigger,
        input=machine.input,
        vars=dict(machine.vars),
        node_runs=tuple(machine.trail),
        runs_left_out=machine.trail.left_out,
        skipped=tuple(machine.never_ran()),
        suspensions=tuple(machine.suspensions),
        error=machine.error,
        started_at=machine.started_at,
        finished_at=machine.finished_at,
        iteration_count=machine.iteration_count,
        execution_data=execution_data(machine),
        deadline=machine.deadline,
        parent_execution_id=machine.parent_execution_id,
        root_execution_id=machine.root_execution_id,
        mode=machine.mode,
    )


def execution_data(machine: ExecutionMachine) -> dict[str, Any]:
    """The persistent working state (seed 000): contexts, active nodes and paths."""
    active = {
        run.node_key: run.run_index
        for run in (*machine._running.values(), *machine._redispatch.values())
    }
    active |= {suspension.node_key: suspension.run_index for suspension in machine.waits.in_order()}
    return {
        "context_data": {
            "workflow": dict(machine.vars),
            "node": machine.contexts.copy(),
        },
        "active_nodes": active,
        "active_paths": dump_paths(machine, whole=True),
        "iteration_count": machine.iteration_count,
    }


def has_unsaved_changes(machine: ExecutionMachine) -> bool:
    """Whether a checkpoint of ``machine`` now would save anything new."""
    return bool(
        not machine._saved
        or machine._saved_status != machine.status
        or machine.trail.has_unsaved
        or machine.waits.has_changes
        or machine._vars_changed
        or machine.contexts.has_changes
    )


def kept_paths(machine: ExecutionMachine) -> dict[str, Any]:
    """The routing state a checkpoint keeps: all of it, but for a completed execution
    only the nodes it skipped (nothing will run again, so nothing else is needed)."""
    if machine.status == "completed":
        return {"skipped": list(machine._skipped), "events": machine.journal.sequence}
    return dump_paths(machine)


def checkpoint_kind(
    machine: ExecutionMachine, take_from: ExecutionStatus | None, clear_request: bool
) -> CheckpointKind:
    """What a store is to do with the next checkpoint (see :class:`Checkpoint`)."""
    if not machine._saved:
        return "start"
    if take_from is not None:
        return "take"
    if (
        machine.status != "running"
        or machine._saved_status != machine.status
        or machine._vars_changed
        or clear_request
    ):
        return "change"
    return "step"


def take_checkpoint(
    machine: ExecutionMachine,
    *,
    take_from: ExecutionStatus | None = None,
    clear_request: bool = False,
) -> Checkpoint:
    """What changed in ``machine`` since its last checkpoint; marks it saved.

    ``take_from`` (the status the execution has in the store) makes it a ``take``:
    the first checkpoint of an execution taken from the store to carry it on.
    ``clear_request`` clears a control request left for it in the store.
    """
    workflow = machine.graph.workflow
    kind = checkpoint_kind(machine, take_from, clear_request)
    contexts, dropped = machine.contexts.take_changes()
    added, removed = machine.waits.take_changes()
    checkpoint = Checkpoint(
        execution_id=machine.execution_id,
        kind=kind,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        workflow_hash=machine.graph.hash,
        status=machine.status,
        trigger=machine.graph.trigger,
        input=machine.input,
        status_changed=machine._saved_status != machine.status,
        active_paths=kept_paths(machine),
        paths_blocks=dump_blocks(machine, kind),
        iteration_count=machine.iteration_count,
        vars=dict(machine.vars) if machine._vars_changed or kind == "start" else None,
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
    )
    if kind != "step":
        machine.revision += 1  # a store counts the changes to an execution's row
    machine._saved = True
    machine._saved_status = machine.status
    if machine.trail.holds_too_many:
        forget_saved_runs(machine)
    machine.trail.saved()
    machine._vars_changed = False
    return checkpoint


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

    for run in (*machine._running.values(), *machine._redispatch.values()):
        with_sources(run)
    for execution_index in machine.waits:
        with_sources(runs[execution_index])
    for latest in runs.latest_runs():
        with_sources(latest)  # a retry of the execution runs it again
    for index, entries in machine._entry_runs.items():
        start = machine._activation.get(index, 0)
        entries[:] = [entry for entry in entries if runs[entry].run_index > start]
        for entry in entries:
            with_sources(runs[entry])
    completed: set[str] = set()
    for position, run in enumerate(runs.newest_first()):
        if position < RUNS_HELD:
            keep.add(run.execution_index)
        if run.status == "completed" and run.node_key not in completed:
            completed.add(run.node_key)
            keep.add(run.execution_index)
    runs.keep_only(keep)
