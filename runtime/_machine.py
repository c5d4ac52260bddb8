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
from array import array
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ._commands import Command, Dispatch
from ._compiler import CompiledNode, ExecutionGraph
from ._context import NodeContext
from ._contexts import NodeContexts
from ._control import cancel, pause, stop, time_out, unpause
from ._control import retry as retry_failed
from ._errors import ExpressionError, InternalError
from ._expressions import NodesView
from ._flow import DONE, READY, RUNNING, Flow
from ._inputs import InvalidParams, deliveries_of, iteration_results, rendered_params
from ._inputs import deliveries as inputs_of
from ._journal import Journal
from ._limits import DEFAULT_LIMITS, Limits
from ._model import DEFAULT_PORT, ERROR_PORT
from ._records import (
    DEADLINE_INDEX,
    Checkpoint,
    ChildMode,
    ChildOutcome,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    NodeResult,
    NodeRun,
    StoredExecution,
    Suspension,
)
from ._retry import next_wait
from ._snapshot import (
    execution_data,
    has_unsaved_changes,
    restore,
    snapshot,
    take_checkpoint,
)
from ._subworkflows import child_ended
from ._trail import Trail
from ._triggers import trigger_context
from ._waiting import resumable, resume_waiting, retry, take_result, wake_run
from ._waitlist import WaitList

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# What a run is given, by input port: one value per connection that delivered.
Deliveries = dict[str, tuple[Any, ...]]


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
        parent_execution_id: str | None = None,
        root_execution_id: str | None = None,
        mode: ChildMode | None = None,
        depth: int = 0,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(graph)
        self.journal = Journal(execution_id, len(graph.nodes))
        # What templates may build, and what data outputs may hold.
        self.limits = limits
        self.execution_id = execution_id
        # Who started it: a parent execution's node (workflow.execute), or nobody.
        self.parent_execution_id = parent_execution_id
        self.root_execution_id = root_execution_id
        self.mode: ChildMode | None = mode
        self.depth = depth
        self.deadline: float | None = None
        # Changes applied to the execution's row in the store so far (a take checks
        # it is still so).
        self.revision = 0
        self.input = input
        self.env: Mapping[str, str] = env if env is not None else _EMPTY
        initial = graph.workflow.variables if vars is None else vars
        self.vars: dict[str, Any] = copy.deepcopy(dict(initial)) if initial else {}
        self.status: ExecutionStatus = "pending"
        self.error: ErrorInfo | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.trigger_data = trigger_context(graph.trigger_kind, graph.trigger, input)

        count = len(graph.order)
        self._run_counts = array("l", (0,)) * count
        # A collecting loop entry's runs (core.for_each), by execution index.
        self._entry_runs: dict[int, list[int]] = {}
        self._activation: dict[int, int] = {}
        self.contexts = NodeContexts()
        self.trail = Trail(count)
        self._running: dict[int, NodeRun] = {}
        self.waits = WaitList()
        self._ready: list[int] = []
        self._redispatch: dict[int, NodeRun] = {}
        self._concurrency = graph.workflow.settings.concurrency
        self._pausing = False
        self._nodes_view: NodesView | None = None  # what templates see as nodes
        self._now = 0.0

        # What changed since the last checkpoint.
        self._vars_changed = bool(self.vars)
        self._saved = False
        self._saved_status: str | None = None

    @classmethod
    def restored(
        cls,
        graph: ExecutionGraph,
        stored: StoredExecution,
        *,
        env: Mapping[str, str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        new: bool = False,
    ) -> ExecutionMachine:
        """A machine in the state a store kept (see :mod:`prana._snapshot`); with
        ``new``, a new execution in that state, not saved yet (a rerun's).

        Call :meth:`recover` to carry on: runs that were in flight run again.
        """
        machine = cls(
            graph,
            execution_id=stored.id,
            input=stored.input,
            env=env,
            vars=stored.vars,
            parent_execution_id=stored.parent_execution_id,
            root_execution_id=stored.root_execution_id,
            mode=stored.mode,
            depth=stored.depth,
            limits=limits,
        )
        restore(machine, stored, new=new)
        return machine

    # ------------------------------------------------------------------ events in

    def start(self, now: float) -> list[Command]:
        """Begin the execution at time ``now``: the trigger node is dispatched."""
        if self.status != "pending":
            raise InternalError(f"execution {self.execution_id} was already started")
        self.status = "running"
        self.started_at = self._now = now
        workflow = self.graph.workflow
        self.journal.started(self._commands, now, workflow.id, workflow.version)
        timeout = workflow.settings.timeout
        if timeout is not None:
            self.deadline = now + timeout
        trigger = self._index[self.graph.trigger]
        self.set_state(trigger, READY)
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
        self._now = now
        index = self._index[result.node_key]
        take_result(self, index, run, result, self._nodes[index].default_port, retry_with=result)
        return self._finish_event(now)

    def resume(
        self, node_key: str | None, data: Any, now: float, answered: NodeResult | None = None
    ) -> list[Command]:
        """Complete a waiting node with ``data`` on its resume port, or as its action's
        resume step ``answered`` (a result: output, error or a new wait).

        ``node_key`` may be omitted when one node is waiting. Raises
        :class:`InvalidTransition`, changing nothing, when the execution has ended or
        no such node is waiting.
        """
        self._now = now
        return resume_waiting(self, node_key, data, now, answered)

    def resumable(self, node_key: str | None, now: float) -> tuple[Suspension, NodeRun]:
        """The wait a resume of ``node_key`` would end, and its run (see :meth:`resume`
        for what it raises)."""
        suspension = resumable(self, node_key, now)
        return suspension, self.trail[suspension.execution_index]

    def wake(self, execution_index: int, now: float) -> list[Command]:
        """A timer fired for a waiting run: it completes with its wake data, if its
        deadline has passed and it is still waiting (otherwise nothing happens)."""
        self._now = now
        if execution_index == DEADLINE_INDEX:
            return time_out(self, now)
        suspension = self.waits.get(execution_index)
        if suspension is None or suspension.wake_at is None or suspension.wake_at > now:
            return []
        if self.status not in ("running", "suspended"):
            return []  # a paused execution's due timers fire when it is unpaused
        return wake_run(self, suspension, now)

    def recover(self, now: float) -> list[Command]:
        """After a restore: run again the nodes that were running when the execution
        was last saved (same run index, same idempotency key), and whatever is ready."""
        self._now = now
        if not self._saved:  # a new execution in a state (a rerun): it starts here
            workflow = self.graph.workflow
            self.journal.started(self._commands, now, workflow.id, workflow.version)
        self._dispatch_again()
        return self._finish_event(now)

    def cancel(self, reason: str | None, now: float) -> list[Command]:
        """End the execution ``cancelled``; see :mod:`prana._control`."""
        self._now = now
        return cancel(self, reason, now)

    def pause(self, now: float) -> list[Command]:
        """Dispatch nothing new; paused once running nodes finish."""
        self._now = now
        return pause(self, now)

    def unpause(self, now: float) -> list[Command]:
        """Carry a paused execution on."""
        self._now = now
        return unpause(self, now)

    def retry(self, now: float) -> list[Command]:
        """Run a failed execution's failed node again."""
        self._now = now
        return retry_failed(self, now)

    def child_ended(self, outcome: ChildOutcome, now: float) -> list[Command]:
        """A child execution ended: the node waiting for it completes or fails."""
        self._now = now
        return child_ended(self, outcome, now)

    # ------------------------------------------------------------------ reading

    @property
    def finished(self) -> bool:
        """Whether the execution has reached a final status."""
        return self.status in ("completed", "failed", "cancelled", "timed_out")

    @property
    def has_unsaved_changes(self) -> bool:
        """Whether anything changed since the last checkpoint."""
        return has_unsaved_changes(self)

    @property
    def pausing(self) -> bool:
        """Whether a pause was asked for and running nodes are still finishing."""
        return self._pausing

    @property
    def has_new_suspensions(self) -> bool:
        """Whether a node started waiting since the last checkpoint (to be saved)."""
        return self.waits.has_new

    @property
    def suspensions(self) -> list[Suspension]:
        """The nodes waiting now, in the order they started waiting."""
        return self.waits.in_order()

    def snapshot(self) -> Execution:
        """The execution as a user sees it now."""
        return snapshot(self)

    def execution_data(self) -> dict[str, Any]:
        """The persistent working state (seed 000): contexts, active nodes and paths.

        ``active_paths`` is the routing state (see :mod:`prana._snapshot`); it refers to
        runs by execution index and never holds their outputs.
        """
        return execution_data(self)

    def checkpoint(
        self, *, take_from: ExecutionStatus | None = None, clear_request: bool = False
    ) -> Checkpoint:
        """What changed since the last checkpoint, to be saved; marks it saved.

        ``take_from``: the execution was taken from the store, where it had this
        status (the checkpoint is applied only if it still has). ``clear_request``:
        it clears a control request left for the execution in the store.
        """
        return take_checkpoint(self, take_from=take_from, clear_request=clear_request)

    def never_ran(self) -> list[str]:
        """Keys of the nodes that were skipped and have not run at all, in skip order."""
        return [key for key in self._skipped if not self._run_counts[self._index[key]]]

    def node_context(self, node_key: str) -> Mapping[str, Any]:
        """The persistent context of one node (empty if it has none)."""
        return self.contexts.get(node_key)

    # ------------------------------------------------------------------ event processing

    def _finish_event(self, now: float) -> list[Command]:
        self._now = now
        self._propagate()
        if self.status in ("running", "paused"):
            activated = self._activated
            if activated:
                activated.reverse()
                self._ready.extend(activated)
                activated.clear()
        if self.status == "running":
            self._dispatch_ready()
            if not self._running and self.status == "running":
                if self._pausing:
                    self._pausing = False
                    self.status = "paused"
                    self.journal.paused(self._commands, now)
                elif not self._ready:
                    if self.waits:
                        self.status = "suspended"
                        self.journal.suspended(self._commands, now, tuple(self.suspensions))
                    else:
                        self.status = "completed"
        if self.finished and self.finished_at is None:
            self.finished_at = now
            self.journal.ended(self._commands, now, self.status, self.error)
        if not self._running:
            self.waits.forget_early()
        commands, self._commands = self._commands, []
        return commands

    def _dispatch_again(self) -> None:
        """Dispatch again the runs that were in flight when the execution was last
        saved (restored, and not carried on yet)."""
        for execution_index in sorted(self._redispatch):
            run = self._redispatch[execution_index]
            self._dispatch(self._index[run.node_key], again=run)
        self._redispatch.clear()

    def _dispatch_ready(self) -> None:
        ready, running = self._ready, self._running
        while ready and len(running) < self._concurrency and self.status == "running":
            if self._pausing:
                return
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

    def _dispatch(
        self, index: int, again: NodeRun | None = None, not_before: float | None = None
    ) -> None:
        """Start a run of node ``index`` (or ``again``, a run in flight when the
        execution was last saved): render its parameters and hand it to a worker, or
        fail it if they cannot be rendered."""
        node = self._nodes[index]
        if again is None:
            run, deliveries, loop_back = self._new_run(index)
        else:
            run, deliveries, loop_back = self._same_run(index, again)
        self.set_state(index, RUNNING)  # its block also holds the run count
        self._running[run.execution_index] = run
        inputs = NodeContext.inputs_from(deliveries)
        node_context = self.contexts.get(node.key)
        try:
            params, recorded = rendered_params(
                self, node, run, loop_back, inputs.get(DEFAULT_PORT), inputs, node_context
            )
        except ExpressionError as exc:
            self._fail_before_run(
                index, run, "expression_error", str(exc), {"template": exc.template}
            )
            return
        except InvalidParams as exc:
            self._fail_before_run(index, run, "invalid_params", f"invalid parameters: {exc}", None)
            return
        if recorded is not None:  # kept with the run's record
            run = attrs.evolve(run, params=recorded)
            self._running[run.execution_index] = run
            self.trail.put(run)
        context = NodeContext(
            execution_id=self.execution_id,
            workflow_id=self.graph.workflow.id,
            node_key=node.key,
            node_type=node.node.type,
            run_index=run.run_index,
            attempt=run.attempt,
            params=params,
            input=inputs.get(DEFAULT_PORT),
            inputs=inputs,
            vars=MappingProxyType(dict(self.vars)) if self.vars else _EMPTY,
            node_context=MappingProxyType(dict(node_context)) if node_context else _EMPTY,
            trigger=self.trigger_data,
            loop_back=loop_back,
            deliveries=deliveries,
            now=self._now if not_before is None else not_before,
        )
        self.journal.node_started(self._commands, self._now, run)
        self._commands.append(
            Dispatch(
                run=run,
                action=node.action,
                context=context,
                not_before=not_before,
                timeout=node.timeout,
                limits=self.limits,
            )
        )

    def _new_run(self, index: int) -> tuple[NodeRun, Deliveries, bool]:
        """A new run of node ``index``, recorded as running: with what it is given on
        each port, and whether a loop-back connection started it."""
        node = self._nodes[index]
        loop_inputs = self._loop_inputs.pop(index, None)
        loop_back = loop_inputs is not None
        run_index = self._run_counts[index]
        self._run_counts[index] = run_index + 1
        if node.is_trigger:
            deliveries: Deliveries = {DEFAULT_PORT: (self.input,)}
            lineage: tuple[tuple[str, int], ...] = ()
        else:
            deliveries, lineage = inputs_of(self, node, loop_inputs)
        if node.back_edges and not loop_back:
            self._activation[index] = run_index
            self._entry_runs.pop(index, None)  # a new activation collects anew
        run = NodeRun(
            node_key=node.key,
            run_index=run_index,
            execution_index=self.trail.new_index(),
            status="running",
            inputs=lineage,
        )
        self.trail.put(run)
        if node.back_edges and node.action.collect_port is not None:
            self._entry_runs.setdefault(index, []).append(run.execution_index)
        return run, deliveries, loop_back

    def _same_run(self, index: int, run: NodeRun) -> tuple[NodeRun, Deliveries, bool]:
        """A run in flight when the execution was last saved, again after a restart:
        same indexes, same inputs."""
        node = self._nodes[index]
        loop_back = node.back_edges != () and self._activation.get(index) != run.run_index
        if node.is_trigger:
            return run, {DEFAULT_PORT: (self.input,)}, loop_back
        return run, deliveries_of(self, run.inputs), loop_back

    # ------------------------------------------------------------------ results

    def _check_port(self, node: CompiledNode, port: str, run: NodeRun) -> ErrorInfo | None:
        if port in node.output_ports:
            return None
        return ErrorInfo(
            code="invalid_port",
            message=f"action {node.action.name!r} returned port {port!r}, which is not one "
            f"of its output ports ({', '.join(node.output_ports)})",
            node_key=node.key,
            run_index=run.run_index,
        )

    def _complete_run(self, index: int, run: NodeRun, port: str, result: NodeResult) -> None:
        node = self._nodes[index]
        data = result.data
        if port == node.action.collect_port:
            data = iteration_results(self, index)
        done = run.ended("completed", result, port=port, output=data)
        if result.node_context is not None:
            self.contexts.set(node.key, dict(result.node_context))
        if result.vars:
            self.vars.update(result.vars)
            self._vars_changed = True
        self._record(index, done)
        self._route(node, port, done)
        self._settle(index)

    def _fail_run(
        self, index: int, run: NodeRun, error: ErrorInfo, result: NodeResult | None
    ) -> None:
        node = self._nodes[index]
        error = attrs.evolve(error, node_key=node.key, run_index=run.run_index)
        if result is not None:
            wait = next_wait(
                node.retry,
                error,
                execution_id=self.execution_id,
                node_key=node.key,
                run_index=run.run_index,
                attempt=result.attempt,
            )
            if wait is not None:
                retry(self, index, run, error, result, wait)
                return
        on_error = node.on_error
        port = (
            None
            if on_error == "stop"
            else (ERROR_PORT if on_error == "error_port" else node.default_port)
        )
        output = error.to_dict() if port is not None else None
        failed = run.ended("failed", result, port=port, output=output, error=error)
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
        self.trail.ended(index, run)
        self.set_state(index, DONE)
        self.journal.run_ended(self._commands, self._now, run)

    def _fail_execution(self, error: ErrorInfo) -> None:
        stop(self, "failed", error)
