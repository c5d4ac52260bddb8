"""The execution state machine: what happens next in one execution (DESIGN §4, §5).

Rules of this module:

* It is pure and synchronous. It never awaits, reads no clock, does no I/O; times
  come in with the events. The supervisor that owns a machine feeds it events
  (:meth:`ExecutionMachine.start`, :meth:`ExecutionMachine.handle`) and carries out
  the commands they return (:class:`Dispatch`, :class:`CancelRuns`) in order.
* Readiness (§5.1): a node is ready when each incoming edge is delivered or dead and
  at least one is delivered; when all are dead it is skipped and its edges die in
  turn. Loop-back edges do not count; a node in ``any`` join mode is ready on its
  first delivery.
* Order: ready nodes sit on a stack. Nodes made ready by one event are pushed so that
  the first in connection order is on top, and the top of the stack runs next: a
  branch runs to its end before its sibling starts. ``settings.concurrency`` takes
  that many from the top at once.
* Loops (§5.4): when every node of a loop has settled (run or been skipped), either
  its loop-back edges delivered (all settled, one or more delivered) and a new
  iteration starts, clearing the loop's inside edges; or the loop has finished and
  the edges leaving it deliver what was last sent on them, or die.
* A delivered edge holds the :class:`NodeRun` that sent on it, not a copy of data.
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ._compiler import CompiledNode, Edge, ExecutionGraph
from ._context import NodeContext
from ._errors import ExpressionError, InternalError
from ._expressions import NodesView
from ._model import DEFAULT_PORT, ERROR_PORT
from ._params import structure_params
from ._records import Checkpoint, ErrorInfo, Execution, ExecutionStatus, NodeResult, NodeRun
from ._registry import Action

# Node states within the current iteration of the loops around it.
_PENDING, _READY, _RUNNING, _DONE, _SKIPPED = range(5)
_SETTLED = (_DONE, _SKIPPED)
# Edge states.
_OPEN, _DELIVERED, _DEAD = range(3)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@attrs.frozen(kw_only=True)
class Dispatch:
    """Command: run ``action`` for ``run`` with ``context``, then report a NodeResult."""

    run: NodeRun
    action: Action
    context: NodeContext


@attrs.frozen(kw_only=True)
class CancelRuns:
    """Command: cancel the workers of these runs (by execution index); the execution
    has failed and their results no longer matter."""

    execution_indexes: tuple[int, ...]


@attrs.frozen(kw_only=True)
class RunFinished:
    """Notice: a node run ended (completed, failed, or cancelled)."""

    run: NodeRun


@attrs.frozen(kw_only=True)
class NodeSkipped:
    """Notice: a node will not run in this iteration; every path into it died."""

    node_key: str


@attrs.frozen(kw_only=True)
class ExecutionFinished:
    """Notice: the execution reached a final status."""

    status: ExecutionStatus


Command = Dispatch | CancelRuns | RunFinished | NodeSkipped | ExecutionFinished


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


class ExecutionMachine:
    """The state of one execution and the rules that move it forward."""

    def __init__(
        self,
        graph: ExecutionGraph,
        *,
        execution_id: str,
        input: Any = None,
        env: Mapping[str, str] | None = None,
        vars: Mapping[str, Any] | None = None,
    ) -> None:
        self.graph = graph
        self.execution_id = execution_id
        self.input = input
        self.env: Mapping[str, str] = env if env is not None else _EMPTY
        self.vars: dict[str, Any] = dict(graph.workflow.variables if vars is None else vars)
        self.status: ExecutionStatus = "pending"
        self.error: ErrorInfo | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.iteration_count = 0
        self.trigger_data: dict[str, Any] = {
            "kind": graph.trigger_kind,
            "node": graph.trigger,
            "data": input,
        }

        nodes = graph.order
        count = len(nodes)
        self._nodes = nodes
        self._index = {node.key: node.index for node in nodes}
        self._state = [_PENDING] * count
        self._settled = [0] * count
        self._delivered = [0] * count
        self._back_settled = [0] * count
        self._back_delivered = [0] * count
        self._run_counts = [0] * count
        self._latest: list[NodeRun | None] = [None] * count
        self._edge_state = [_OPEN] * len(graph.edges)
        self._edge_run: list[NodeRun | None] = [None] * len(graph.edges)
        self._unsettled = [len(loop.nodes) for loop in graph.loops]
        self._exit_buffer: list[dict[int, NodeRun]] = [{} for _ in graph.loops]
        self._loop_depth = [self._depth(loop.id) for loop in graph.loops]
        self._loop_inputs: dict[int, list[tuple[Edge, NodeRun]]] = {}
        self._node_contexts: dict[str, dict[str, Any]] = {}
        self._runs: list[NodeRun] = []
        self._running: dict[int, NodeRun] = {}
        self._ready: list[int] = []
        self._skipped: dict[str, None] = {}
        self._concurrency = graph.workflow.settings.concurrency
        self._max_iterations = graph.workflow.settings.max_iterations

        # Work lists of the event being processed.
        self._commands: list[Command] = []
        self._activated: list[int] = []
        self._to_skip: deque[int] = deque()
        self._quiescent: list[int] = []
        self._nodes_view = NodesView(self._node_record, self._completed_keys, self._index)

    # ------------------------------------------------------------------ events in

    def start(self, now: float) -> list[Command]:
        """Begin the execution at time ``now``: the trigger node is dispatched."""
        if self.status != "pending":
            raise InternalError(f"execution {self.execution_id} was already started")
        self.status = "running"
        self.started_at = now
        trigger = self._index[self.graph.trigger]
        self._state[trigger] = _READY
        self._activated.append(trigger)
        return self._finish_event(now)

    def handle(self, result: NodeResult, now: float) -> list[Command]:
        """Take in a node worker's result; return what to do next.

        Results for runs that are no longer running (cancelled after a failure) are
        ignored.
        """
        run = self._running.pop(result.execution_index, None)
        if run is None or self.status != "running":
            return []
        index = self._index[result.node_key]
        node = self._nodes[index]
        if result.error is not None:
            self._fail_run(index, run, result.error, result)
        else:
            port = result.port or node.default_port
            if port not in node.output_ports:
                error = ErrorInfo(
                    code="invalid_port",
                    message=f"action {node.action.name!r} returned port {port!r}, which is not one "
                    f"of its output ports ({', '.join(node.output_ports)})",
                    node_key=node.key,
                    run_index=run.run_index,
                )
                self._fail_run(index, run, error, result)
            else:
                self._complete_run(index, run, port, result)
        return self._finish_event(now)

    # ------------------------------------------------------------------ reading

    @property
    def finished(self) -> bool:
        """Whether the execution has reached a final status."""
        return self.status in ("completed", "failed", "cancelled", "timed_out")

    @property
    def running_count(self) -> int:
        """How many node runs are in flight."""
        return len(self._running)

    def snapshot(self) -> Execution:
        """The execution as a user sees it now."""
        workflow = self.graph.workflow
        return Execution(
            id=self.execution_id,
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            status=self.status,
            trigger=self.graph.trigger,
            input=self.input,
            vars=dict(self.vars),
            node_runs=tuple(self._runs),
            skipped=tuple(self._skipped),
            error=self.error,
            started_at=self.started_at,
            finished_at=self.finished_at,
            iteration_count=self.iteration_count,
            execution_data=self.execution_data(),
        )

    def execution_data(self) -> dict[str, Any]:
        """The persistent working state (seed 000): contexts, active nodes and paths."""
        return {
            "context_data": {
                "workflow": dict(self.vars),
                "node": {key: dict(value) for key, value in self._node_contexts.items()},
            },
            "active_nodes": {run.node_key: run.run_index for run in self._running.values()},
            "active_paths": [self._nodes[index].key for index in self._ready],
            "iteration_count": self.iteration_count,
            "skipped": list(self._skipped),
        }

    def checkpoint(self, runs: tuple[NodeRun, ...] | None = None) -> Checkpoint:
        """A checkpoint of the execution now, carrying ``runs`` (default: every run)."""
        workflow = self.graph.workflow
        return Checkpoint(
            execution_id=self.execution_id,
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            status=self.status,
            trigger=self.graph.trigger,
            input=self.input,
            execution_data=self.execution_data(),
            error=self.error,
            started_at=self.started_at,
            finished_at=self.finished_at,
            runs=tuple(self._runs) if runs is None else runs,
        )

    def node_context(self, node_key: str) -> Mapping[str, Any]:
        """The persistent context of one node (empty if it has none)."""
        return self._node_contexts.get(node_key, _EMPTY)

    # ------------------------------------------------------------------ event processing

    def _finish_event(self, now: float) -> list[Command]:
        self._propagate()
        if self.status == "running":
            activated = self._activated
            if activated:
                activated.reverse()
                self._ready.extend(activated)
                activated.clear()
            self._dispatch_ready()
            if not self._running and not self._ready and self.status == "running":
                self.status = "completed"
        if self.finished and self.finished_at is None:
            self.finished_at = now
            self._commands.append(ExecutionFinished(status=self.status))
        commands, self._commands = self._commands, []
        return commands

    def _propagate(self) -> None:
        to_skip, quiescent = self._to_skip, self._quiescent
        while self.status == "running" and (to_skip or quiescent):
            if to_skip:
                self._skip(to_skip.popleft())
                continue
            quiescent.sort(key=self._loop_depth.__getitem__)
            loop_id = quiescent.pop()
            if self._unsettled[loop_id] == 0:
                self._loop_settled(loop_id)

    def _dispatch_ready(self) -> None:
        ready, running = self._ready, self._running
        while ready and len(running) < self._concurrency and self.status == "running":
            index = ready.pop()
            if self._state[index] != _READY:
                continue
            self._dispatch(index)
            if self._to_skip or self._quiescent or self._activated:
                # The node failed before it could run (a template, say) and that
                # changed what is ready; settle that before dispatching more.
                self._propagate()
                if self._activated:
                    self._activated.reverse()
                    ready.extend(self._activated)
                    self._activated.clear()

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, index: int) -> None:
        node = self._nodes[index]
        run_index = self._run_counts[index]
        self._run_counts[index] = run_index + 1
        execution_index = len(self._runs)
        self._state[index] = _RUNNING
        run = NodeRun(
            node_key=node.key,
            run_index=run_index,
            execution_index=execution_index,
            status="running",
        )
        self._runs.append(run)
        self._running[execution_index] = run

        loop_inputs = self._loop_inputs.pop(index, None)
        loop_back = loop_inputs is not None
        if node.is_trigger:
            deliveries: dict[str, tuple[Any, ...]] = {DEFAULT_PORT: (self.input,)}
        else:
            deliveries = self._deliveries(node, loop_inputs)
        inputs = {
            port: values[0] if len(values) == 1 else list(values)
            for port, values in deliveries.items()
        }
        node_input = inputs.get(DEFAULT_PORT)
        node_context = self._node_contexts.get(node.key, _EMPTY)

        action = node.action
        params: Any
        try:
            if loop_back and not action.render_on_loop_back:
                params = None
            elif node.params.has_templates:
                params = node.params.render(
                    self._scope(node, node_input, inputs, node_context), node.key
                )
            else:
                params = node.params.value
            if action.params is not None and params is not None:
                try:
                    params = structure_params(action.params, params)
                except ValueError as exc:
                    raise _InvalidParams(str(exc)) from None
        except ExpressionError as exc:
            self._fail_before_run(
                index, run, "expression_error", str(exc), {"template": exc.template}
            )
            return
        except _InvalidParams as exc:
            self._fail_before_run(index, run, "invalid_params", f"invalid parameters: {exc}", None)
            return

        context = NodeContext(
            execution_id=self.execution_id,
            workflow_id=self.graph.workflow.id,
            node_key=node.key,
            node_type=node.node.type,
            run_index=run_index,
            params=params,
            input=node_input,
            inputs=inputs,
            vars=MappingProxyType(dict(self.vars)) if self.vars else _EMPTY,
            node_context=MappingProxyType(dict(node_context)) if node_context else _EMPTY,
            trigger=self.trigger_data,
            loop_back=loop_back,
            deliveries=deliveries,
        )
        self._commands.append(Dispatch(run=run, action=action, context=context))

    def _deliveries(
        self, node: CompiledNode, loop_inputs: list[tuple[Edge, NodeRun]] | None
    ) -> dict[str, tuple[Any, ...]]:
        collected: dict[str, list[Any]] = {}
        if loop_inputs is not None:
            for edge, sent in loop_inputs:
                collected.setdefault(edge.target_port, []).append(sent.output)
        else:
            edge_state, edge_run = self._edge_state, self._edge_run
            for edge in node.incoming:
                if edge_state[edge.index] == _DELIVERED:
                    source_run = edge_run[edge.index]
                    assert source_run is not None
                    collected.setdefault(edge.target_port, []).append(source_run.output)
        return {port: tuple(values) for port, values in collected.items()}

    def _scope(
        self,
        node: CompiledNode,
        node_input: Any,
        inputs: Mapping[str, Any],
        node_context: Mapping[str, Any],
    ) -> dict[str, Any]:
        loop_context: Any = None
        if node.expression_loop is not None:
            loop_context = self._node_contexts.get(self.graph.loops[node.expression_loop].entry, {})
        return {
            "input": node_input,
            "inputs": inputs,
            "nodes": self._nodes_view,
            "trigger": self.trigger_data,
            "vars": self.vars,
            "env": self.env,
            "execution": {
                "id": self.execution_id,
                "workflow": self.graph.workflow.id,
                "workflow_version": self.graph.workflow.version,
                "started_at": _iso(self.started_at),
                "iteration_count": self.iteration_count,
            },
            "node": node_context,
            "loop": loop_context,
        }

    def _node_record(self, key: str) -> Mapping[str, Any] | None:
        index = self._index.get(key)
        if index is None:
            return None
        run = self._latest[index]
        if run is None:
            return None
        return {
            "output": run.output,
            "status": run.status,
            "port": run.port,
            "duration_ms": run.duration_ms,
            "run_index": run.run_index,
            "context": self._node_contexts.get(key, {}),
        }

    def _completed_keys(self) -> list[str]:
        return [node.key for node in self._nodes if self._latest[node.index] is not None]

    # ------------------------------------------------------------------ results

    def _complete_run(self, index: int, run: NodeRun, port: str, result: NodeResult) -> None:
        node = self._nodes[index]
        done = NodeRun(
            node_key=node.key,
            run_index=run.run_index,
            execution_index=run.execution_index,
            status="completed",
            attempt=result.attempt,
            port=port,
            output=result.data,
            started_at=result.started_at,
            finished_at=result.finished_at,
            duration_ms=result.duration_ms,
        )
        if result.node_context is not None:
            self._node_contexts[node.key] = dict(result.node_context)
        if result.vars:
            self.vars.update(result.vars)
        self._record(index, done)
        self._route(node, port, done)
        self._settle(index)

    def _fail_run(
        self, index: int, run: NodeRun, error: ErrorInfo, result: NodeResult | None
    ) -> None:
        node = self._nodes[index]
        error = attrs.evolve(error, node_key=node.key, run_index=run.run_index)
        on_error = node.on_error
        port = (
            None
            if on_error == "stop"
            else (ERROR_PORT if on_error == "error_port" else node.default_port)
        )
        failed = NodeRun(
            node_key=node.key,
            run_index=run.run_index,
            execution_index=run.execution_index,
            status="failed",
            attempt=result.attempt if result else run.attempt,
            port=port,
            output=error.to_dict() if port is not None else None,
            error=error,
            started_at=result.started_at if result else None,
            finished_at=result.finished_at if result else None,
            duration_ms=result.duration_ms if result else None,
        )
        self._record(index, failed)
        if port is None:
            self._fail_execution(error)
            return
        self._route(node, port, failed)
        self._settle(index)

    def _fail_before_run(
        self, index: int, run: NodeRun, code: str, message: str, details: Any
    ) -> None:
        del self._running[run.execution_index]
        error = ErrorInfo(code=code, message=message, details=details)
        self._fail_run(index, run, error, None)

    def _record(self, index: int, run: NodeRun) -> None:
        self._runs[run.execution_index] = run
        self._latest[index] = run
        self._state[index] = _DONE
        self._commands.append(RunFinished(run=run))

    def _fail_execution(self, error: ErrorInfo) -> None:
        self.status = "failed"
        self.error = error
        self._ready.clear()
        self._activated.clear()
        self._to_skip.clear()
        self._quiescent.clear()
        if self._running:
            indexes = tuple(sorted(self._running))
            for execution_index in indexes:
                running = self._running.pop(execution_index)
                cancelled = attrs.evolve(running, status="cancelled")
                self._runs[execution_index] = cancelled
                self._commands.append(RunFinished(run=cancelled))
            self._commands.append(CancelRuns(execution_indexes=indexes))

    # ------------------------------------------------------------------ routing

    def _route(self, node: CompiledNode, port: str, run: NodeRun) -> None:
        for edge_port, edges in node.outgoing:
            if edge_port == port:
                for edge in edges:
                    if edge.exit_scope is not None:
                        self._exit_buffer[edge.exit_scope][edge.index] = run
                    else:
                        self._deliver(edge, run)
            else:
                for edge in edges:
                    if edge.exit_scope is None:
                        self._kill(edge)

    def _deliver(self, edge: Edge, run: NodeRun) -> None:
        self._edge_state[edge.index] = _DELIVERED
        self._edge_run[edge.index] = run
        target = self._index[edge.target]
        if edge.loop_back:
            self._back_settled[target] += 1
            self._back_delivered[target] += 1
            return
        self._settled[target] += 1
        self._delivered[target] += 1
        self._check(target)

    def _kill(self, edge: Edge) -> None:
        self._edge_state[edge.index] = _DEAD
        target = self._index[edge.target]
        if edge.loop_back:
            self._back_settled[target] += 1
            return
        self._settled[target] += 1
        self._check(target)

    def _check(self, index: int) -> None:
        if self._state[index] != _PENDING:
            return
        node = self._nodes[index]
        all_settled = self._settled[index] == len(node.incoming)
        if self._delivered[index] and (all_settled or node.join_any):
            self._state[index] = _READY
            self._activated.append(index)
        elif all_settled:
            self._state[index] = _SKIPPED
            self._to_skip.append(index)

    def _skip(self, index: int) -> None:
        node = self._nodes[index]
        self._skipped[node.key] = None
        self._commands.append(NodeSkipped(node_key=node.key))
        for _, edges in node.outgoing:
            for edge in edges:
                if edge.exit_scope is None:
                    self._kill(edge)
        self._settle(index)

    # ------------------------------------------------------------------ loops

    def _depth(self, loop_id: int) -> int:
        depth, parent = 0, self.graph.loops[loop_id].parent
        while parent is not None:
            depth, parent = depth + 1, self.graph.loops[parent].parent
        return depth

    def _settle(self, index: int) -> None:
        unsettled = self._unsettled
        for loop_id in self._nodes[index].loops:
            unsettled[loop_id] -= 1
            if unsettled[loop_id] == 0:
                self._quiescent.append(loop_id)

    def _loop_settled(self, loop_id: int) -> None:
        loop = self.graph.loops[loop_id]
        entry = self._index[loop.entry]
        back_edges = self._nodes[entry].back_edges
        if self._back_delivered[entry] and self._back_settled[entry] == len(back_edges):
            self.iteration_count += 1
            if self.iteration_count > self._max_iterations:
                self._fail_execution(
                    ErrorInfo(
                        code="loop_limit_exceeded",
                        message=f"the loop at {loop.entry!r} went past settings.max_iterations "
                        f"({self._max_iterations}) loop iterations in this execution; check its exit "
                        "condition, or raise settings.max_iterations",
                        details={"max_iterations": self._max_iterations, "loop_entry": loop.entry},
                        node_key=loop.entry,
                    )
                )
                return
            deliveries = []
            for edge in back_edges:
                if self._edge_state[edge.index] == _DELIVERED:
                    source_run = self._edge_run[edge.index]
                    assert source_run is not None
                    deliveries.append((edge, source_run))
            self._reset_loop(loop_id)
            self._loop_inputs[entry] = deliveries
            self._state[entry] = _READY
            self._activated.append(entry)
            return
        if self._back_settled[entry] != len(back_edges):
            raise InternalError(f"loop at {loop.entry!r} settled with loop-back edges still open")
        buffer = self._exit_buffer[loop_id]
        edges = self.graph.edges
        for edge_index in loop.exit_edges:
            edge = edges[edge_index]
            sent = buffer.pop(edge_index, None)
            if sent is not None:
                self._deliver(edge, sent)
            else:
                self._kill(edge)

    def _reset_loop(self, loop_id: int) -> None:
        graph = self.graph
        loop = graph.loops[loop_id]
        entry = self._index[loop.entry]
        for key in loop.nodes:
            index = self._index[key]
            self._state[index] = _PENDING
            self._back_settled[index] = self._back_delivered[index] = 0
            if index != entry:
                self._settled[index] = self._delivered[index] = 0
        for edge_index in loop.inside_edges:
            self._edge_state[edge_index] = _OPEN
            self._edge_run[edge_index] = None
        size = len(loop.nodes)
        self._unsettled[loop_id] = size
        for inner in loop.descendants:
            self._unsettled[inner] = len(graph.loops[inner].nodes)
            self._exit_buffer[inner].clear()
        parent = loop.parent
        while parent is not None:
            self._unsettled[parent] += size
            parent = graph.loops[parent].parent


class _InvalidParams(Exception):
    pass
