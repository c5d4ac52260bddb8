"""Compiling a workflow into a frozen, shareable :class:`ExecutionGraph` (DESIGN §3).

Compilation validates once and indexes once. The graph holds the part of the
workflow its trigger reaches; edges are numbered in connection order; every node
knows its incoming edges (loop-back edges apart), its outgoing edges by port and the
loops it belongs to. Every execution of the workflow shares the graph; nothing in it
changes after compilation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ._errors import Problem, WorkflowValidationError, did_you_mean
from ._expressions import CompiledParams, Template
from ._graph import GraphEdge, exit_scope, find_loops, loop_chains, reachable_from
from ._loading import workflow_to_dict
from ._model import ERROR_PORT, Connection, Node, RetrySettings, Workflow
from ._registry import Action, ActionRegistry
from ._validation import Analysis, checked_analysis, effective_on_error


@attrs.frozen(kw_only=True, eq=False)
class Edge:
    """A connection as the engine runs it.

    ``index`` numbers the edges of the graph in connection order. ``loop_back`` edges
    lead back to the entry of their loop. ``exit_scope`` is the outermost loop the
    edge leaves, if any: such an edge delivers only when that loop has finished.
    """

    index: int
    connection_index: int
    source: str
    source_port: str
    target: str
    target_port: str
    loop_back: bool
    exit_scope: int | None

    def __str__(self) -> str:
        return f"{self.source}.{self.source_port} -> {self.target}.{self.target_port}"


@attrs.frozen(kw_only=True, eq=False)
class Loop:
    """A loop of the graph: its entry, members and the edges it clears per iteration."""

    id: int
    entry: str
    nodes: tuple[str, ...]
    back_edges: tuple[int, ...]
    inside_edges: tuple[int, ...]
    exit_edges: tuple[int, ...]
    parent: int | None
    descendants: tuple[int, ...]


@attrs.frozen(kw_only=True, eq=False)
class CompiledNode:
    """A node with everything the engine needs to run it, looked up once."""

    key: str
    index: int
    node: Node
    action: Action
    params: CompiledParams
    input_ports: tuple[str, ...]
    output_ports: tuple[str, ...]
    default_port: str
    join_any: bool
    on_error: str
    retry: RetrySettings | None
    timeout: float | None
    incoming: tuple[Edge, ...]
    back_edges: tuple[Edge, ...]
    outgoing: tuple[tuple[str, tuple[Edge, ...]], ...]
    outgoing_by_port: Mapping[str, tuple[Edge, ...]]
    loops: tuple[int, ...]
    expression_loop: int | None
    is_trigger: bool

    def outgoing_on(self, port: str) -> tuple[Edge, ...]:
        """The edges leaving this node's ``port``, in connection order."""
        return self.outgoing_by_port.get(port, ())


@attrs.frozen(kw_only=True, eq=False)
class ExecutionGraph:
    """A compiled workflow for one trigger: frozen and shared by its executions."""

    workflow: Workflow
    trigger: str
    trigger_kind: str
    nodes: Mapping[str, CompiledNode]
    order: tuple[CompiledNode, ...]
    # Each node's number (its position in ``order``), by key.
    index: Mapping[str, int]
    edges: tuple[Edge, ...]
    loops: tuple[Loop, ...]
    warnings: tuple[Problem, ...]
    hash: str
    # settings.concurrency_key, compiled: executions are queued first (see WorkflowSettings)
    concurrency_key: Template | None = None

    def outgoing(self, node_key: str, port: str) -> tuple[Edge, ...]:
        """Edges leaving ``node_key`` on ``port``, in connection order."""
        return self.nodes[node_key].outgoing_on(port)

    def incoming(self, node_key: str) -> tuple[Edge, ...]:
        """Every edge into ``node_key`` (loop-back edges included), in connection order."""
        node = self.nodes[node_key]
        return tuple(sorted((*node.incoming, *node.back_edges), key=lambda edge: edge.index))


def definition_hash(workflow: Workflow) -> str:
    """The SHA-256 of a workflow's definition in canonical JSON (``json.dumps`` with
    sorted keys and no spaces): equal for equal definitions, however they were
    written."""
    digest = hashlib.sha256()
    for part in _canonical_parts(workflow_to_dict(workflow)):
        digest.update(part.encode())
    return digest.hexdigest()


# Long lists (a definition's nodes, its connections) are made into JSON this many
# items at a time: one call of the encoder holds Python's lock throughout (60 ms for
# 10 000 nodes), and between calls a check on a worker thread (Engine.load_workflow)
# lets the event loop run.
_PIECE = 500


def _canonical_parts(whole: Mapping[str, Any]) -> Iterator[str]:
    """``json.dumps(whole, sort_keys=True, separators=(",", ":"))``, in parts."""
    yield "{"
    for position, key in enumerate(sorted(whole)):
        yield ("," if position else "") + json.dumps(key) + ":"
        value = whole[key]
        if not isinstance(value, list) or len(value) <= _PIECE:
            yield json.dumps(value, sort_keys=True, separators=(",", ":"))
            continue
        yield "["
        for start in range(0, len(value), _PIECE):
            piece = json.dumps(value[start : start + _PIECE], sort_keys=True, separators=(",", ":"))
            yield ("," if start else "") + piece[1:-1]
        yield "]"
    yield "}"


def triggers_of(workflow: Workflow, registry: ActionRegistry) -> list[str]:
    """Keys of the workflow's trigger nodes, in definition order."""
    found = []
    for node in workflow.nodes:
        action = registry.get(node.type)
        if action is not None and action.trigger is not None:
            found.append(node.key)
    return found


def compile_workflow(
    workflow: Workflow, registry: ActionRegistry, *, trigger: str | None = None
) -> ExecutionGraph:
    """Validate ``workflow`` against ``registry`` and compile it for one trigger.

    ``trigger`` picks the trigger node when the workflow has several. Raises
    :class:`WorkflowValidationError` listing every problem.
    """
    analysis = checked_analysis(workflow, registry)
    problems = list(analysis.problems)
    triggers = triggers_of(workflow, registry)
    chosen = _choose_trigger(triggers, trigger, workflow, problems)
    if problems or chosen is None:
        raise WorkflowValidationError(problems, source=f"workflow {workflow.id!r}")
    return _build(workflow, analysis, chosen, triggers)


def _choose_trigger(
    triggers: list[str], trigger: str | None, workflow: Workflow, problems: list[Problem]
) -> str | None:
    if trigger is not None:
        if trigger in triggers:
            return trigger
        keys = [node.key for node in workflow.nodes]
        what = "is not a trigger" if trigger in keys else "is not a node of this workflow"
        problems.append(
            Problem(
                path="trigger",
                message=f"{trigger!r} {what}{did_you_mean(trigger, triggers)}; "
                f"its triggers are {', '.join(triggers) or 'none'}",
            )
        )
        return None
    if len(triggers) > 1:
        problems.append(
            Problem(
                path="trigger",
                message=f"the workflow has {len(triggers)} triggers ({', '.join(triggers)}); "
                "choose one: engine.run(..., trigger='KEY'), 'prana run --trigger KEY', or "
                "?trigger=KEY in the URL of a daemon's start request",
            )
        )
        return None
    return triggers[0] if triggers else None


_NO_OUTGOING: Mapping[str, tuple[Edge, ...]] = MappingProxyType({})


def _build(
    workflow: Workflow, analysis: Analysis, trigger: str, triggers: list[str]
) -> ExecutionGraph:
    actions, params = analysis.actions, analysis.params
    all_edges = [
        GraphEdge(number=index, source=connection.from_, target=connection.to)
        for index, connection in enumerate(workflow.connections)
    ]
    reachable = reachable_from(trigger, all_edges)
    from_any_trigger = set(reachable)
    for key in triggers:
        if key != trigger:
            from_any_trigger |= reachable_from(key, all_edges)
    warnings = tuple(
        Problem(
            path=f"nodes[{index}]",
            message=f"node {node.key!r} is never run: no trigger leads to it",
        )
        for index, node in enumerate(workflow.nodes)
        if node.key not in from_any_trigger
    )

    definition_nodes = [node for node in workflow.nodes if node.key in reachable]
    keys = [node.key for node in definition_nodes]
    kept: list[tuple[int, Connection]] = [
        (index, connection)
        for index, connection in enumerate(workflow.connections)
        if connection.from_ in reachable
    ]
    graph_edges = (
        all_edges  # every connection kept: numbered alike
        if len(kept) == len(all_edges)
        else [
            GraphEdge(number=position, source=connection.from_, target=connection.to)
            for position, (_, connection) in enumerate(kept)
        ]
    )
    if graph_edges is all_edges and len(keys) == len(workflow.nodes) and analysis.loops is not None:
        shapes = list(analysis.loops)  # the same graph the analysis looked at
    else:
        shapes, _ = find_loops(keys, graph_edges)
    chains = loop_chains(shapes)
    back = {index for shape in shapes for index in shape.back_edges}
    order = {key: position for position, key in enumerate(keys)}

    edges = tuple(
        Edge(
            index=position,
            connection_index=connection_index,
            source=connection.from_,
            source_port=connection.from_port,
            target=connection.to,
            target_port=connection.to_port,
            loop_back=position in back,
            exit_scope=exit_scope(connection.from_, connection.to, shapes, chains),
        )
        for position, (connection_index, connection) in enumerate(kept)
    )

    loops = _build_loops(shapes, edges, order)
    # Each node's edges, by one pass over the edges (in connection order).
    leaving: dict[str, dict[str, list[Edge]]] = {}
    entering: dict[str, list[Edge]] = {}
    looping_back: dict[str, list[Edge]] = {}
    for edge in edges:
        leaving.setdefault(edge.source, {}).setdefault(edge.source_port, []).append(edge)
        (looping_back if edge.loop_back else entering).setdefault(edge.target, []).append(edge)
    compiled: dict[str, CompiledNode] = {}
    for index, node in enumerate(definition_nodes):
        action = actions[node.key]
        on_error = effective_on_error(node, workflow)
        output_ports = action.output_ports(node.params)
        if on_error == "error_port" and ERROR_PORT not in output_ports:
            output_ports = (*output_ports, ERROR_PORT)
        by_port = leaving.get(node.key)
        outgoing = (
            _NO_OUTGOING
            if by_port is None
            else MappingProxyType({port: tuple(edges) for port, edges in by_port.items()})
        )
        chain = tuple(chains.get(node.key, ()))
        compiled[node.key] = CompiledNode(
            key=node.key,
            index=index,
            node=node,
            action=action,
            params=params[node.key],
            input_ports=action.input_ports(node.params),
            output_ports=output_ports,
            default_port=action.default_port_of(node.params),
            join_any=action.join_mode(node.params) == "any",
            on_error=on_error,
            retry=node.settings.retry,
            timeout=node.settings.timeout,
            incoming=tuple(entering.get(node.key, ())),
            back_edges=tuple(looping_back.get(node.key, ())),
            outgoing=tuple(outgoing.items()),  # iterated at each run: as a tuple
            outgoing_by_port=outgoing,
            loops=chain,
            expression_loop=_expression_loop(node.key, chain, loops),
            is_trigger=node.key == trigger,
        )
    return ExecutionGraph(
        workflow=workflow,
        trigger=trigger,
        trigger_kind=actions[trigger].trigger or "manual",
        nodes=MappingProxyType(compiled),
        order=tuple(compiled.values()),
        index=order,
        edges=edges,
        loops=loops,
        warnings=warnings,
        hash=definition_hash(workflow),
        concurrency_key=analysis.concurrency_key,
    )


def _build_loops(
    shapes: list[Any], edges: tuple[Edge, ...], order: Mapping[str, int]
) -> tuple[Loop, ...]:
    loops: list[Loop] = []
    for loop_id, shape in enumerate(shapes):
        descendants = []
        for other_id, other in enumerate(shapes):
            parent = other.parent
            while parent is not None:
                if parent == loop_id:
                    descendants.append(other_id)
                    break
                parent = shapes[parent].parent
        loops.append(
            Loop(
                id=loop_id,
                entry=shape.entry,
                nodes=tuple(sorted(shape.nodes, key=order.__getitem__)),
                back_edges=shape.back_edges,
                inside_edges=tuple(
                    edge.index
                    for edge in edges
                    if edge.source in shape.nodes and edge.target in shape.nodes
                ),
                exit_edges=tuple(edge.index for edge in edges if edge.exit_scope == loop_id),
                parent=shape.parent,
                descendants=tuple(descendants),
            )
        )
    return tuple(loops)


def _expression_loop(key: str, chain: tuple[int, ...], loops: tuple[Loop, ...]) -> int | None:
    """The loop whose entry's context a node sees as ``loop`` in templates.

    Inside a loop it is that loop; for the entry itself, the loop around it.
    """
    for loop_id in chain:
        if loops[loop_id].entry != key:
            return loop_id
    return None
