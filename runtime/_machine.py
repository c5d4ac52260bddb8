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

import copy
import datetime
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ._commands import (
    CancelRuns,
    Command,
    Dispatch,
    ExecutionFinished,
    RunFinished,
)
from ._compiler import CompiledNode, Edge, ExecutionGraph
from ._context import NodeContext
from ._errors import ExpressionError, InternalError
from ._expressions import NodesView
from ._flow import DELIVERED, DONE, READY, RUNNING, Flow
from ._model import DEFAULT_PORT, ERROR_PORT
from ._params import structure_params
from ._records import Checkpoint, ErrorInfo, Execution, ExecutionStatus, NodeResult, NodeRun

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


class ExecutionMachine(Flow):
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
        super().__init__(graph)
        self.execution_id = execution_id
        self.input = input
        self.env: Mapping[str, str] = env if env is not None else _EMPTY
        initial = graph.workflow.variables if vars is None else vars
        self.vars: dict[str, Any] = copy.deepcopy(dict(initial)) if initial else {}
        self.status: ExecutionStatus = "pending"
        self.error: ErrorInfo | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.trigger_data: dict[str, Any] = {
            "kind": graph.trigger_kind,
            "node": graph.trigger,
            "data": input,
        }

        count = len(graph.order)
        self._run_counts = [0] * count
        self._latest: list[NodeRun | None] = [None] * count
        self._node_contexts: dict[str, dict[str, Any]] = {}
        self._runs: list[NodeRun] = []
        self._running: dict[int, NodeRun] = {}
        self._ready: list[int] = []
        self._concurrency = graph.workflow.settings.concurrency
        self._nodes_view = NodesView(self._node_record, self._completed_keys, self._index)

    # ------------------------------------------------------------------ events in

    def start(self, now: float) -> list[Command]:
        """Begin the execution at time ``now``: the trigger node is dispatched."""
        if self.status != "pending":
            raise InternalError(f"execution {self.execution_id} was already started")
        self.status = "running"
        self.started_at = now
        trigger = self._index[self.graph.trigger]
        self._state[trigger] = READY
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
            skipped=tuple(self.never_ran()),
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
            "skipped": self.never_ran(),
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

    def never_ran(self) -> list[str]:
        """Keys of the nodes that were skipped and have not run at all, in skip order."""
        return [key for key in self._skipped if not self._run_counts[self._index[key]]]

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

    def _dispatch_ready(self) -> None:
        ready, running = self._ready, self._running
        while ready and len(running) < self._concurrency and self.status == "running":
            index = ready.pop()
            if self._state[index] != READY:
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
        self._state[index] = RUNNING
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
        inputs = NodeContext.inputs_from(deliveries)
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
        incoming = node.incoming
        if loop_inputs is None and len(incoming) == 1:
            (edge,) = incoming
            if self._edge_state[edge.index] != DELIVERED:
                return {}
            source_run = self._edge_run[edge.index]
            assert source_run is not None
            return {edge.target_port: (source_run.output,)}
        collected: dict[str, list[Any]] = {}
        if loop_inputs is not None:
            for edge, sent in loop_inputs:
                collected.setdefault(edge.target_port, []).append(sent.output)
        else:
            edge_state, edge_run = self._edge_state, self._edge_run
            for edge in incoming:
                if edge_state[edge.index] == DELIVERED:
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
        self._state[index] = DONE
        if self.notices:
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
                if self.notices:
                    self._commands.append(RunFinished(run=cancelled))
            self._commands.append(CancelRuns(execution_indexes=indexes))


class _InvalidParams(Exception):
    pass
