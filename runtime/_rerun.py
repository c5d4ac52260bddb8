"""Running an execution again from a chosen node (``engine.rerun``), or one node
alone (``engine.run_node``).

A rerun is a new execution of the same workflow version. Every node that is not
downstream of the chosen node (not reachable from it) and whose latest run in the
original ended on a port keeps that run: it is copied into the new execution's trail
and its output goes out again on the port it took, so the chosen node and what follows
it see the data they saw the first time. The chosen node, everything downstream of it,
and the nodes of the original that never ended on a port (a failure that stopped the
execution, a run cut short) run in the new execution. Nodes the original skipped stay
skipped. The variables and node contexts are the original's as it stands. A new
input replaces the trigger's (its output, and ``trigger.*`` in templates).

What this module makes is the state a store would keep for such an execution
(:class:`StoredExecution`), which the state machine restores like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._blocks import WHOLE_FORMAT, joined
from ._errors import InvalidTransition
from ._flow import DONE, OPEN_REF, PENDING, READY, SKIPPED
from ._graph import GraphEdge, reachable_from
from ._records import NodeRun, StoredExecution

if TYPE_CHECKING:
    from ._compiler import ExecutionGraph


class _Original:
    """The original execution's input (a rerun's default)."""

    def __repr__(self) -> str:
        return "ORIGINAL"


ORIGINAL: Any = _Original()


def rerun_state(
    graph: ExecutionGraph,
    original: StoredExecution,
    from_node: str,
    execution_id: str,
    now: float,
    input: Any = ORIGINAL,
) -> StoredExecution:
    """The state of a new execution that reruns ``original`` from ``from_node`` (see
    the module's docstring). Raises :class:`InvalidTransition` if it cannot be done:
    an unknown node, one inside a loop (rerun from the loop's entry), an original
    that is still running."""
    if original.status in ("pending", "queued", "running"):
        raise InvalidTransition(
            f"execution {original.id} is {original.status}; rerun it once it waits or ends"
        )
    node = graph.nodes.get(from_node)
    if node is None:
        raise InvalidTransition(
            f"workflow {graph.workflow.id!r} (v{graph.workflow.version}) has no node "
            f"{from_node!r} that its trigger {graph.trigger!r} reaches"
        )
    inside = [
        graph.loops[loop].entry for loop in node.loops if graph.loops[loop].entry != from_node
    ]
    if inside:
        raise InvalidTransition(
            f"node {from_node!r} is inside the loop entered at {inside[0]!r}: rerun from "
            f"{inside[0]!r}, or from a node before the loop"
        )
    fresh = reachable_from(
        from_node, (GraphEdge(edge.index, edge.source, edge.target) for edge in graph.edges)
    )
    paths = joined(dict(original.active_paths), original.paths_blocks)
    skipped = [key for key in paths.get("skipped", ()) if key not in fresh]
    latest: dict[str, NodeRun] = {}
    for run in sorted(original.runs, key=lambda run: run.execution_index):
        if run.status in ("completed", "failed"):
            latest[run.node_key] = run
    kept = [
        run
        for key, run in latest.items()
        if key not in fresh and key in graph.nodes and run.port is not None
    ]
    kept.sort(key=lambda run: run.execution_index)
    copies = {
        run.node_key: attrs.evolve(run, execution_index=position, inputs=())
        for position, run in enumerate(kept)
    }
    if input is not ORIGINAL and graph.trigger in copies:  # the trigger gives the new input
        copies[graph.trigger] = attrs.evolve(copies[graph.trigger], output=input)

    order = graph.order
    index = {compiled.key: position for position, compiled in enumerate(order)}
    states = [PENDING] * len(order)
    run_counts = [0] * len(order)
    for key, run in copies.items():
        states[index[key]] = DONE
        run_counts[index[key]] = run.run_index + 1
    for key in skipped:
        if key in index and key not in copies:
            states[index[key]] = SKIPPED
    edges = []
    for edge in graph.edges:
        source = copies.get(edge.source)
        if source is not None:
            edges.append(source.execution_index if source.port == edge.source_port else -1)
        elif edge.source in skipped:
            edges.append(-1)
        else:
            edges.append(OPEN_REF)
    # What is ready now follows from the edges, by the machine's own rule, as it
    # restores this state (Flow.settle_made_state); but for the trigger, which has
    # no edges in.
    ready = []
    if graph.nodes[from_node].is_trigger and states[index[from_node]] == PENDING:
        states[index[from_node]] = READY
        ready.append(index[from_node])
    contexts = {key: fields for key, fields in original.node_contexts.items() if key not in fresh}
    return StoredExecution(
        id=execution_id,
        workflow_id=original.workflow_id,
        workflow_version=original.workflow_version,
        workflow_hash=original.workflow_hash,
        trigger=original.trigger,
        status="running",
        input=original.input if input is ORIGINAL else input,
        vars=original.vars,
        node_contexts=contexts,
        active_paths={
            "format": WHOLE_FORMAT,
            "nodes": "".join(str(state) for state in states),
            "edges": tuple(edges),
            "run_counts": tuple(run_counts),
            "next": len(copies),
            "ready": ready,
            "skipped": skipped,
        },
        started_at=now,
        runs=tuple(copies.values()),
        root_execution_id=execution_id,
    )


def one_node_state(
    graph: ExecutionGraph,
    node_key: str,
    input: Any,
    nodes: Mapping[str, Any],
    execution_id: str,
    now: float,
) -> StoredExecution:
    """The state of an execution about to run ``node_key`` alone (``engine.run_node``):
    the trigger has output ``input``, the nodes of ``nodes`` have output what it maps
    them to, and the node's connections from them deliver it. Raises
    :class:`ValueError` for a node the graph does not have, or one that would get
    no input."""
    node = graph.nodes.get(node_key)
    if node is None:
        raise ValueError(
            f"workflow {graph.workflow.id!r} has no node {node_key!r} that its trigger "
            f"{graph.trigger!r} reaches"
        )
    unknown = sorted(key for key in nodes if key not in graph.nodes)
    if unknown:
        raise ValueError(f"nodes= names nodes the workflow does not have: {', '.join(unknown)}")
    given = {graph.trigger: input, **nodes}
    into = {edge.source: edge.source_port for edge in node.incoming}
    if not node.is_trigger and not any(source in given for source in into):
        raise ValueError(
            f"node {node_key!r} gets its input from {', '.join(sorted(into))}: give the "
            "output of one of them in nodes="
        )
    order = graph.order
    copies: dict[str, NodeRun] = {}
    for compiled in order:
        if compiled.key in given and compiled.key != node_key:
            copies[compiled.key] = NodeRun(
                node_key=compiled.key,
                run_index=0,
                execution_index=len(copies),
                status="completed",
                port=into.get(compiled.key, compiled.default_port),
                output=given[compiled.key],
            )
    index = {compiled.key: position for position, compiled in enumerate(order)}
    states = [PENDING] * len(order)
    for key in copies:
        states[index[key]] = DONE
    states[index[node_key]] = READY
    edges = [OPEN_REF] * len(graph.edges)
    for edge in node.incoming:
        source = copies.get(edge.source)
        edges[edge.index] = source.execution_index if source is not None else -1
    return StoredExecution(
        id=execution_id,
        workflow_id=graph.workflow.id,
        workflow_version=graph.workflow.version,
        workflow_hash=graph.hash,
        trigger=graph.trigger,
        status="running",
        input=input,
        vars=graph.workflow.variables,
        active_paths={
            "format": WHOLE_FORMAT,
            "nodes": "".join(str(state) for state in states),
            "edges": tuple(edges),
            "run_counts": tuple(int(state == DONE) for state in states),
            "next": len(copies),
            "ready": [index[node_key]],
        },
        started_at=now,
        runs=tuple(copies.values()),
        root_execution_id=execution_id,
    )
