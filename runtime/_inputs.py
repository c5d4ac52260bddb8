"""What a node run is given: its inputs, where they came from, and its template scope.

Functions of the state machine's dispatch, kept apart because they only read its
state: the data delivered on each input port (and the lineage of each value, the
run that sent it), the names a template sees, and a loop entry's collected
iteration results.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._context import NodeContext
from ._json import sized_copy
from ._model import DEFAULT_PORT
from ._params import structure_params
from ._records import NodeRun

if TYPE_CHECKING:
    from ._compiler import CompiledNode, Edge
    from ._machine import ExecutionMachine

Deliveries = dict[str, tuple[Any, ...]]
Lineage = tuple[tuple[str, int], ...]


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def deliveries(
    machine: ExecutionMachine, node: CompiledNode, loop_inputs: list[tuple[Edge, NodeRun]] | None
) -> tuple[Deliveries, Lineage]:
    """The data delivered to ``node`` on each port (from ``loop_inputs`` when a loop
    iteration starts it), and where each value came from."""
    if loop_inputs is None:
        loop_inputs = machine.flow.delivered_to(node)
    if len(loop_inputs) == 1:
        ((edge, sent),) = loop_inputs
        port = edge.target_port
        return {port: (sent.output,)}, ((port, sent.execution_index),)
    collected: dict[str, list[Any]] = {}
    for edge, sent in loop_inputs:
        collected.setdefault(edge.target_port, []).append(sent.output)
    lineage = tuple((edge.target_port, sent.execution_index) for edge, sent in loop_inputs)
    return {port: tuple(values) for port, values in collected.items()}, lineage


def deliveries_of(machine: ExecutionMachine, lineage: Lineage) -> Deliveries:
    """The data on each port of a run again, from its recorded lineage."""
    collected: dict[str, list[Any]] = {}
    for port, source in lineage:
        collected.setdefault(port, []).append(machine.trail[source].output)
    return {port: tuple(values) for port, values in collected.items()}


def scope(
    machine: ExecutionMachine,
    node: CompiledNode,
    run: NodeRun,
    loop_back: bool,
    node_input: Any,
    inputs: Mapping[str, Any],
    node_context: Mapping[str, Any],
) -> dict[str, Any]:
    """The names a node's templates see (DESIGN §6)."""
    loop_context: Any = None
    if node.expression_loop is not None:
        # The loop around the node: its entry's context (a core.for_each cursor), the
        # entry's key and the iteration of the loop's current pass (0, 1, ...).
        entry = machine.graph.loops[node.expression_loop].entry
        loop_context = {
            **machine.contexts.get(entry),
            "entry": entry,
            "iteration": machine.flow.iteration(machine.graph.index[entry]),
        }
    return {
        "input": node_input,
        "inputs": inputs,
        "nodes": machine.nodes_view,
        "trigger": machine.trigger_data,
        "vars": machine.vars,
        "env": machine.env,
        "execution": {
            "id": machine.execution_id,
            "workflow": machine.graph.workflow.id,
            "workflow_version": machine.graph.workflow.version,
            "started_at": _iso(machine.started_at),
            "iteration_count": machine.flow.iteration_count,
        },
        "node": node_context,
        "loop": loop_context,
        "run": {"index": run.run_index, "attempt": run.attempt, "loop_back": loop_back},
    }


class InvalidParams(Exception):
    """Rendered parameters that do not fit the action's params class."""


def rendered_params(
    machine: ExecutionMachine,
    node: CompiledNode,
    run: NodeRun,
    loop_back: bool,
    node_input: Any,
    inputs: Mapping[str, Any],
    node_context: Mapping[str, Any],
) -> tuple[Any, Any]:
    """The parameters a run is given (an instance of the action's params class, if
    it has one) and what its record keeps of them (:func:`recorded_params`). Raises
    :class:`ExpressionError` or :class:`InvalidParams`."""
    action = node.action
    if loop_back and not action.render_on_loop_back:
        return None, None
    params: Any
    most = machine.limits.recorded_params
    if node.params.has_templates:
        names = scope(machine, node, run, loop_back, node_input, inputs, node_context)
        params = node.params.render(names, node.key, machine.limits)
        recorded = recorded_params(params, most)
    else:
        params = node.params.value
        records = node.params.constant_records
        if most not in records:
            records[most] = recorded_params(params, most)
        recorded = records[most]
    if action.params is not None and params is not None:
        try:
            params = structure_params(action.params, params)
        except ValueError as exc:
            raise InvalidParams(str(exc)) from None
    return params, recorded


def recorded_params(params: Any, most: int) -> Any:
    """What a run's record keeps of its rendered ``params``: them, or past ``most``
    bytes of JSON the start of their JSON text ending in ``...``; ``None`` for none."""
    if not params or not most:
        return None
    # A plain copy (constant parameters are read-only views) and about its size.
    copy, size = sized_copy(params)
    if size <= most:
        return copy
    return json.dumps(copy, ensure_ascii=False)[:most] + "..."


def node_record(machine: ExecutionMachine, key: str) -> Mapping[str, Any] | None:
    """``nodes.<key>`` in a template: the node's latest ended run, or ``None``."""
    index = machine.graph.index.get(key)
    if index is None:
        return None
    run = machine.trail.latest(index)
    if run is None:
        return None
    return {
        "output": run.output,
        "status": run.status,
        "port": run.port,
        "duration_ms": run.duration_ms,
        "run_index": run.run_index,
        "context": machine.contexts.get(key) or {},
    }


def completed_keys(machine: ExecutionMachine) -> list[str]:
    """Keys of the nodes that have a run to show in templates."""
    trail = machine.trail
    return [node.key for node in machine.graph.order if trail.latest(node.index) is not None]


def iteration_results(machine: ExecutionMachine, index: int) -> list[Any]:
    """What came back on the loop-back connections of a loop entry, one entry per
    iteration of its current activation, from the runs' recorded inputs."""
    results = []
    for execution_index in machine.flow.collected(index):
        run = machine.trail[execution_index]
        returned = deliveries_of(machine, run.inputs)
        results.append(NodeContext.inputs_from(returned).get(DEFAULT_PORT))
    return results
