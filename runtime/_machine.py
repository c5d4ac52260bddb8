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
* Waits (§5.3, §5.5): a node that suspends waits for data (a resume), a deadline (its
  timer), its ``sync`` child's end, or, after a failure with a long backoff, its next
  attempt; a resume for a wait whose timeout has passed is refused
  (:class:`WaitTimedOut`) and the wait ends through its timeout.
* Control (§5.7), each legal only from some statuses (:data:`prana._control.ALLOWED`),
  else :class:`InvalidTransition` and nothing changes: ``cancel`` ends the execution
  ``cancelled`` (runs in flight are cancelled, waits end, ``sync`` children are
  cancelled too); ``pause`` dispatches nothing new and the execution is ``paused``
  once its running nodes finish (waiting nodes may still be resumed; timers that come
  due fire at the unpause); ``unpause`` carries on; ``retry`` runs a failed
  execution's failed node again as a new attempt (same run index, so the same
  idempotency key), with the nodes the failure cut short; past ``settings.timeout``
  the execution ends ``timed_out`` like a cancel.

The module is past 600 lines because it is one concept: the rules above act on the
same few pieces of state (the runs in flight, the ready stack, the status) in one
event at a time, and split across modules they could only share that state by
reaching into each other's. The state that stands on its own is in parts with their
own methods: :class:`Flow` (readiness and loops), :class:`Trail` (the audit trail),
:class:`WaitList`, :class:`NodeContexts` and :class:`Journal` (the events).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

import attrs

from ._commands import CancelChildren, CancelRuns, Command, Dispatch
from ._compiler import CompiledNode, ExecutionGraph
from ._context import NodeContext
from ._contexts import NodeContexts
from ._control import check_allowed
from ._errors import ExpressionError, InternalError, InvalidTransition
from ._expressions import NodesView
from ._flow import DONE, READY, RUNNING, SUSPENDED, Flow
from ._inputs import (
    InvalidParams,
    completed_keys,
    deliveries_of,
    iteration_results,
    node_record,
    rendered_params,
)
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
    QueuePlace,
    StoredExecution,
    Suspension,
)
from ._retry import DURABLE_BACKOFF, next_wait
from ._snapshot import (
    checkpoint_kind,
    checkpoint_of,
    execution_data,
    forget_saved_runs,
    has_unsaved_changes,
    restore_paths,
    snapshot,
)
from ._time import iso_time
from ._trail import Trail
from ._triggers import trigger_context
from ._waiting import ENDED_HOW, NOT_RESUMABLE, WaitTimedOut, ended_how
from ._waitlist import WaitList

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_by_execution_index = operator.attrgetter("execution_index")
# What a run is given, by input port: one value per connection that delivered.
Deliveries = dict[str, tuple[Any, ...]]


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
        parent_execution_id: str | None = None,
        root_execution_id: str | None = None,
        mode: ChildMode | None = None,
        depth: int = 0,
        limits: Limits = DEFAULT_LIMITS,
        copy_on_read: Callable[[Any], Any] | None = None,
    ) -> None:
        self.graph = graph
        self.journal = Journal(execution_id, len(graph.nodes))
        # Readiness and loops: which nodes are ready, skipped or run again.
        self.flow = Flow(graph, self.journal)
        self._nodes = graph.order
        self._index = graph.index
        # What templates may build, and what data outputs may hold.
        self.limits = limits
        # How an action that may change the data it is given (not isolate_inputs=False)
        # gets its own: the contexts of its runs copy each data field with this when
        # first read (NodeContext.copying_on_read). Without it, contexts are as they
        # are, and whoever calls such an action copies.
        self._copy_on_read = copy_on_read
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
        # Its place in the queue, if it was queued before it ran (see queue()).
        self.queue_place: QueuePlace | None = None
        self.trigger_data = trigger_context(graph.trigger_kind, graph.trigger, input)

        self.contexts = NodeContexts()
        self.trail = Trail(len(graph.order))
        self._running: dict[int, NodeRun] = {}
        self.waits = WaitList()
        self._ready: list[int] = []
        self._redispatch: dict[int, NodeRun] = {}
        self._concurrency = graph.workflow.settings.concurrency
        self._pausing = False
        self._nodes_view: NodesView | None = None  # what templates see as nodes
        self._now = 0.0

        # What the event being processed has to be carried out.
        self._commands: list[Command] = []

        # What changed since the last checkpoint.
        self._vars_changed = bool(self.vars)
        self._saved = False
        self._saved_status: ExecutionStatus | None = None

    @classmethod
    def restored(
        cls,
        graph: ExecutionGraph,
        stored: StoredExecution,
        *,
        env: Mapping[str, str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        copy_on_read: Callable[[Any], Any] | None = None,
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
            copy_on_read=copy_on_read,
        )
        machine._restore(stored, new)
        return machine

    def _restore(self, stored: StoredExecution, new: bool) -> None:
        """Take the state a store kept (see :mod:`prana._snapshot`). With ``new``, a
        new execution in that state: its first checkpoint starts it in the store, with
        every run, variable and context field it holds (a rerun, :mod:`prana._rerun`)."""
        self.deadline = stored.deadline
        self.revision = stored.revision
        self.status = stored.status
        self.error = stored.error
        self.started_at = stored.started_at
        self.finished_at = stored.finished_at
        self.queue_place = stored.queue
        self.flow.iteration_count = stored.iteration_count
        self.contexts.restored(stored.node_contexts, unsaved=new)
        self._vars_changed = new
        self._saved = not new
        restored = restore_paths(self, stored)
        if restored is None:  # completed: nothing left to run
            self._saved_status = stored.status
            return
        for run in restored.in_flight:
            self._redispatch[run.execution_index] = run
        self._ready = list(restored.ready)
        self._pausing = restored.pausing
        if new:
            self.flow.settle_made_state()
            self.trail.all_unsaved()
            self.flow.all_changed()

    # ------------------------------------------------------------------ events in

    def queue(self, now: float, priority: int | None = None) -> list[Command]:
        """Put a new execution in the queue at time ``now`` instead of starting it:
        its concurrency key is rendered (see ``WorkflowSettings``) and it waits,
        ``queued``, until an engine claims it and calls :meth:`start`. ``priority``
        replaces the workflow's. Raises :class:`ExpressionError` if the key cannot be
        rendered, or is not a string or a number."""
        if self.status != "pending":
            raise InternalError(f"execution {self.execution_id} was already started")
        settings = self.graph.workflow.settings
        self.queue_place = QueuePlace(
            key=self._concurrency_key(),
            limit=settings.concurrency_limit,
            priority=settings.priority if priority is None else priority,
        )
        self.status = "queued"
        self.started_at = self._now = now
        workflow = self.graph.workflow
        self.journal.queued(self._commands, now, workflow.id, workflow.version, self.queue_place)
        commands, self._commands = self._commands, []
        return commands

    def _concurrency_key(self) -> str | None:
        template = self.graph.concurrency_key
        if template is None:
            return None
        scope = {"input": self.input, "trigger": self.trigger_data, "env": self.env}
        key = template.render(scope, limits=self.limits)
        if key is None or key == "":
            return None  # no key: queued with its priority, but not limited
        if isinstance(key, bool) or not isinstance(key, (str, int, float)):
            raise ExpressionError(
                f"settings.concurrency_key {template.text!r} gave {type(key).__name__} "
                f"{key!r}; it must give a string or a number",
                template=template.text,
                parameter="concurrency_key",
            )
        return str(key)

    def start(self, now: float) -> list[Command]:
        """Begin the execution at time ``now``: the trigger node is dispatched. A
        queued execution keeps the time it was queued as its ``started_at``."""
        if self.status not in ("pending", "queued"):
            raise InternalError(f"execution {self.execution_id} was already started")
        if self.status == "pending":
            self.started_at = now
        self.status = "running"
        self._now = now
        workflow = self.graph.workflow
        self.journal.started(self._commands, now, workflow.id, workflow.version)
        timeout = workflow.settings.timeout
        if timeout is not None:
            self.deadline = now + timeout
        trigger = self._index[self.graph.trigger]
        self.flow.started(trigger)
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
        self._take_result(index, run, result, self._nodes[index].default_port, retry_with=result)
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
        suspension = self._resumable(node_key, now)
        if answered is not None:
            return self._answer_wait(suspension, answered, now)
        if data is None and suspension.wake_at is not None and suspension.kind != "webhook":
            # A timer's wait, ended early without data: as the timer would end it.
            return self._end_wait(suspension, suspension.wake_port, suspension.wake_data, now)
        return self._end_wait(suspension, suspension.resume_port, data, now)

    def resumable(self, node_key: str | None, now: float) -> tuple[Suspension, NodeRun]:
        """The wait a resume of ``node_key`` would end, and its run (see :meth:`resume`
        for what it raises)."""
        suspension = self._resumable(node_key, now)
        return suspension, self.trail[suspension.execution_index]

    def wake(self, execution_index: int, now: float) -> list[Command]:
        """A timer fired for a waiting run: it completes with its wake data, if its
        deadline has passed and it is still waiting (otherwise nothing happens)."""
        self._now = now
        if execution_index == DEADLINE_INDEX:
            return self._time_out(now)
        suspension = self.waits.get(execution_index)
        if suspension is None or suspension.wake_at is None or suspension.wake_at > now:
            return []
        if self.status not in ("running", "suspended"):
            return []  # a paused execution's due timers fire when it is unpaused
        return self._wake_run(suspension, now)

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
        """End the execution ``cancelled`` with ``reason``: runs in flight are cancelled,
        waiting nodes stop waiting, ``sync`` children are cancelled too."""
        check_allowed("cancel", self.status, self.execution_id)
        self._now = now
        if self.started_at is None:
            self.started_at = now
        self._stop("cancelled", ErrorInfo(code="cancelled", message=reason or "cancelled"))
        return self._finish_event(now)

    def pause(self, now: float) -> list[Command]:
        """Dispatch nothing new; paused once running nodes finish."""
        if self._pausing:
            raise InvalidTransition(f"execution {self.execution_id} is being paused already")
        check_allowed("pause", self.status, self.execution_id)
        self._now = now
        self._pausing = True
        self.status = "running"
        return self._finish_event(now)

    def unpause(self, now: float) -> list[Command]:
        """Carry a paused execution on."""
        check_allowed("unpause", self.status, self.execution_id)
        self._now = now
        self.status = "running"
        commands: list[Command] = []
        self.journal.resumed(commands, now, "unpause")
        self._dispatch_again()
        for suspension in self.suspensions:
            if suspension.wake_at is None or suspension.wake_at > now:
                continue
            if suspension.kind == "retry":
                commands += self._retry_now(suspension, now)
            else:
                port, data = suspension.wake_port, suspension.wake_data
                commands += self._end_wait(suspension, port, data, now)
            if self.finished:
                return commands
        return commands + self._finish_event(now)

    def retry(self, now: float) -> list[Command]:
        """Run a failed execution's failed node again."""
        check_allowed("retry", self.status, self.execution_id)
        failed = self._failed_run()
        cut_short_keys = {
            self._nodes[index].key for index in self.flow.nodes_in(RUNNING, SUSPENDED)
        }
        if failed is None and not cut_short_keys:
            raise InvalidTransition(
                f"execution {self.execution_id} failed before any node did "
                f"({self.error.message if self.error else 'no error recorded'}); "
                "there is no node to run again: start a new execution"
            )
        self._now = now
        self.status = "running"
        self.error = None
        self.finished_at = None
        commands: list[Command] = []
        self.journal.resumed(commands, now, "retry")
        cut_short = []
        for run in self.trail.newest_first():  # each such node's latest attempt
            if run.node_key in cut_short_keys and run.status != "retried":
                cut_short_keys.discard(run.node_key)
                cut_short.append(run.execution_index)
        again = {*cut_short} if failed is None else {failed.execution_index, *cut_short}
        for execution_index in sorted(again):
            self._run_again(self.trail[execution_index])
        return commands + self._finish_event(now)

    def child_ended(self, outcome: ChildOutcome, now: float) -> list[Command]:
        """A child execution ended: the node waiting for it completes or fails.

        An outcome for a child no node waits for is kept while a node run is in flight
        (its worker may be about to report that it waits for that child) and otherwise
        ignored (the parent ended, or heard of it already).
        """
        self._now = now
        suspension = self.waits.for_child(outcome.child_execution_id)
        if suspension is None:
            if self._running and not self.finished:
                self.waits.keep_early(outcome)
            return []
        if self.finished:
            return []
        self._settle_child(suspension, outcome, now)
        return self._finish_event(now)

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
    def in_flight(self) -> list[NodeRun]:
        """The runs in flight, and those in flight when the execution was last saved
        that have not been dispatched again yet, by execution index."""
        runs = [*self._running.values(), *self._redispatch.values()]
        if len(runs) > 1:
            runs.sort(key=_by_execution_index)
        return runs

    @property
    def ready(self) -> list[int]:
        """The nodes ready to run, by index, the next to run last (a copy)."""
        return list(self._ready)

    @property
    def saved(self) -> bool:
        """Whether the execution is in the store (a checkpoint was taken, or it was
        restored from there)."""
        return self._saved

    @property
    def saved_status(self) -> ExecutionStatus | None:
        """The status the last checkpoint saved (``None``: none since restored)."""
        return self._saved_status

    @property
    def vars_changed(self) -> bool:
        """Whether the variables changed since the last checkpoint."""
        return self._vars_changed

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
        kind = checkpoint_kind(self, take_from, clear_request)
        checkpoint = checkpoint_of(self, kind, take_from=take_from, clear_request=clear_request)
        if kind != "step":
            self.revision += 1  # a store counts the changes to an execution's row
        self._saved = True
        self._saved_status = self.status
        self._vars_changed = False
        if self.trail.holds_too_many:
            forget_saved_runs(self)
        self.trail.saved()
        return checkpoint

    def never_ran(self) -> list[str]:
        """Keys of the nodes that were skipped and have not run at all, in skip order."""
        return self.flow.never_ran()

    @property
    def nodes_view(self) -> NodesView:
        """What templates see as ``nodes``: each node's latest ended run."""
        view = self._nodes_view
        if view is None:  # made once, for the first node with templates
            view = self._nodes_view = NodesView(
                partial(node_record, self),
                partial(completed_keys, self),
                self._index,
                self.flow.is_skipped,
            )
        return view

    def node_context(self, node_key: str) -> Mapping[str, Any]:
        """The persistent context of one node (empty if it has none)."""
        return self.contexts.get(node_key)

    # ------------------------------------------------------------------ event processing

    def _finish_event(self, now: float) -> list[Command]:
        self._now = now
        self._propagate()
        if self.status in ("running", "paused"):
            self._ready.extend(self.flow.take_activated())
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
            if self.flow.state(index) != READY:
                continue
            self._dispatch(index)
            if self.flow.has_work:
                # The node failed before it could run (a template, say) and that
                # changed what is ready; settle that before dispatching more.
                self._propagate()
                ready.extend(self.flow.take_activated())

    def _propagate(self) -> None:
        """Let what the event changed flow on (a running execution's): skips, and
        loops that came to rest; a loop past its limit fails the execution."""
        if self.status == "running":
            error = self.flow.propagate(self._commands, self._now)
            if error is not None:
                self._fail_execution(error)

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
        self.flow.set_state(index, RUNNING)  # its block also holds the run count
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
            copy_on_read=self._copy_on_read if node.action.isolate_inputs else None,
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
        loop_inputs = self.flow.take_loop_inputs(index)
        loop_back = loop_inputs is not None
        run_index = self.flow.count_run(index)
        if node.is_trigger:
            deliveries: Deliveries = {DEFAULT_PORT: (self.input,)}
            lineage: tuple[tuple[str, int], ...] = ()
        else:
            deliveries, lineage = inputs_of(self, node, loop_inputs)
        if node.back_edges and not loop_back:
            self.flow.entered(index, run_index)
        run = NodeRun(
            node_key=node.key,
            run_index=run_index,
            execution_index=self.trail.new_index(),
            status="running",
            inputs=lineage,
        )
        self.trail.put(run)
        if loop_back and node.action.collect_port is not None:
            self.flow.collect(index, run.execution_index)  # an iteration came back
        return run, deliveries, loop_back

    def _same_run(self, index: int, run: NodeRun) -> tuple[NodeRun, Deliveries, bool]:
        """A run in flight when the execution was last saved, again after a restart:
        same indexes, same inputs."""
        node = self._nodes[index]
        loop_back = node.back_edges != () and self.flow.is_loop_back(index, run.run_index)
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
        self.flow.node_ended(node, port, done)

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
                self._retry_later(index, run, error, result, wait)
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
        self.flow.node_ended(node, port, failed)

    def _fail_before_run(
        self, index: int, run: NodeRun, code: str, message: str, details: Any
    ) -> None:
        del self._running[run.execution_index]
        error = ErrorInfo(code=code, message=message, details=details)
        self._fail_run(index, run, error, None)

    def _record(self, index: int, run: NodeRun) -> None:
        self.trail.ended(index, run)
        self.flow.set_state(index, DONE)
        self.journal.run_ended(self._commands, self._now, run)

    def _fail_execution(self, error: ErrorInfo) -> None:
        self._stop("failed", error)

    # ------------------------------------------------------------------ waits and control

    def _resumable(self, node_key: str | None, now: float) -> Suspension:
        """The wait a resume of ``node_key`` (or of the only waiting node) would end.
        Raises :class:`InvalidTransition` (:class:`WaitTimedOut` if its time is up)."""
        if self.status not in ("running", "suspended", "paused"):
            raise InvalidTransition(
                f"execution {self.execution_id} is {self.status}; only an execution with a "
                "waiting node can be resumed"
            )
        waiting = [
            s
            for s in self.waits.in_order()
            if s.kind not in NOT_RESUMABLE and (node_key is None or s.node_key == node_key)
        ]
        others = [s for s in self.waits.in_order() if s.kind in NOT_RESUMABLE]
        if not waiting and others and (node_key is None or node_key == others[0].node_key):
            what = (
                f"it waits for its child execution {others[0].child_execution_id} to end"
                if others[0].kind == "workflow"
                else "it waits to be tried again after a failure"
            )
            raise InvalidTransition(
                f"node {others[0].node_key!r} of execution {self.execution_id} is not waiting "
                f"for data: {what}, and carries on by itself"
            )
        if not waiting:
            keys = ", ".join(s.node_key for s in self.waits.in_order()) or "none"
            what = f"node {node_key!r} is not" if node_key else "no node is"
            raise InvalidTransition(
                f"{what} waiting in execution {self.execution_id} (waiting: {keys})"
            )
        if len(waiting) > 1:
            keys = ", ".join(sorted(s.node_key for s in waiting))
            raise InvalidTransition(
                f"several nodes are waiting in execution {self.execution_id} ({keys}); "
                "say which one to resume with node="
            )
        (suspension,) = waiting
        wake_at = suspension.wake_at
        if wake_at is not None and wake_at <= now and suspension.kind == "webhook":
            raise WaitTimedOut(
                f"the wait of node {suspension.node_key!r} in execution {self.execution_id} "
                f"timed out (at {iso_time(wake_at)}) before this resume came; it "
                f"goes on through its {suspension.wake_port!r} port",
                execution_index=suspension.execution_index,
            )
        return suspension

    def _answer_wait(
        self, suspension: Suspension, answered: NodeResult, now: float
    ) -> list[Command]:
        """End a wait as its action's resume step made of the resume data (see
        ``Action.on_resume``): complete the run (on the resume port unless it names
        another), fail it (a resume step is not retried), or wait again."""
        index, run, waited = self._stop_waiting(suspension, now)
        result = attrs.evolve(
            answered,
            attempt=run.attempt,
            started_at=waited.started_at,
            finished_at=now,
            duration_ms=waited.duration_ms,
        )
        self._take_result(index, run, result, suspension.resume_port, retry_with=None)
        return self._finish_event(now)

    def _take_result(
        self,
        index: int,
        run: NodeRun,
        result: NodeResult,
        default_port: str,
        *,
        retry_with: NodeResult | None,
    ) -> None:
        """Apply what a run came to: it failed (``retry_with`` the result its retries
        count from, if they apply), waits, or completes on the port it names, else
        ``default_port``."""
        if result.error is not None:
            self._fail_run(index, run, result.error, retry_with)
        elif result.suspend is not None:
            self._suspend_run(index, run, result)
        else:
            port = result.port or default_port
            error = self._check_port(self._nodes[index], port, run)
            if error is not None:
                self._fail_run(index, run, error, retry_with)
            else:
                self._complete_run(index, run, port, result)

    def _next_attempt(self, index: int, run: NodeRun, attempt: int) -> NodeRun:
        """A new attempt of ``run`` (same run index and inputs), recorded in place of it
        as the node's run; the caller dispatches or suspends it."""
        again = NodeRun(
            node_key=run.node_key,
            run_index=run.run_index,
            execution_index=self.trail.new_index(),
            status="running",
            attempt=attempt,
            inputs=run.inputs,
        )
        self.trail.put(again)
        self.flow.recollect(index, run.execution_index, again.execution_index)
        return again

    def _retry_later(
        self,
        index: int,
        run: NodeRun,
        error: ErrorInfo,
        result: NodeResult,
        wait: float,
    ) -> None:
        """Record the failed attempt and start the next: at once, after a wait in
        memory, or (for a long wait) as a durable timer, the node waiting meanwhile."""
        node = self._nodes[index]
        failed = run.ended("retried", result, error=error)
        self.trail.record(failed)
        again = self._next_attempt(index, run, result.attempt + 1)
        at = self._now + wait
        self.journal.retrying(self._commands, self._now, failed, again.attempt, at)
        if wait <= DURABLE_BACKOFF:
            self._dispatch(index, again=again, not_before=at if wait > 0 else None)
            return
        suspension = Suspension(
            execution_id=self.execution_id,
            node_key=node.key,
            run_index=again.run_index,
            execution_index=again.execution_index,
            kind="retry",
            wake_at=at,
            wake_port=node.default_port,
            resume_port=node.default_port,
        )
        self.trail.put(attrs.evolve(again, status="suspended"))
        self.flow.set_state(index, SUSPENDED)
        self.waits.add(suspension)

    def _wake_run(self, suspension: Suspension, now: float) -> list[Command]:
        """A waiting run's deadline passed: a durable retry runs its next attempt, a wait
        for a child times out, any other wait ends with its wake data on its wake port."""
        if suspension.kind == "retry":
            return self._retry_now(suspension, now)
        if suspension.child_execution_id is not None:
            self._time_out_child(suspension, now)
            return self._finish_event(now)
        return self._end_wait(suspension, suspension.wake_port, suspension.wake_data, now)

    def _retry_now(self, suspension: Suspension, now: float) -> list[Command]:
        self._now = now
        self.waits.remove(suspension.execution_index)
        self.status = "running"
        run = attrs.evolve(self.trail[suspension.execution_index], status="running")
        self.trail.put(run)
        self._dispatch(self._index[run.node_key], again=run)
        return self._finish_event(now)

    def _suspend_run(self, index: int, run: NodeRun, result: NodeResult) -> None:
        node = self._nodes[index]
        request = result.suspend
        assert request is not None
        wake_port = request.wake_port or node.default_port
        resume_port = request.resume_port or node.default_port
        for port in (wake_port, resume_port):
            error = self._check_port(node, port, run)
            if error is not None:
                self._fail_run(index, run, error, result)
                return
        if (
            request.wake_at is not None
            and request.wake_at <= self._now
            and request.child_execution_id is None
        ):
            # The deadline has passed already: no need to wait.
            woken = attrs.evolve(result, data=request.wake_data, suspend=None)
            self._complete_run(index, run, wake_port, woken)
            return
        suspension = Suspension(
            execution_id=self.execution_id,
            node_key=node.key,
            run_index=run.run_index,
            execution_index=run.execution_index,
            kind=request.kind,
            token=request.token,
            wake_at=request.wake_at,
            wake_port=wake_port,
            wake_data=request.wake_data,
            resume_port=resume_port,
            started_at=result.started_at,
            child_execution_id=request.child_execution_id,
            data=request.data,
            params=run.params,
        )
        waiting = attrs.evolve(run, status="suspended", started_at=result.started_at)
        self.trail.put(waiting)
        self.flow.set_state(index, SUSPENDED)
        self.waits.add(suspension)
        self.journal.node_suspended(self._commands, self._now, suspension)
        if request.child_execution_id is not None:
            outcome = self.waits.take_early(request.child_execution_id)
            if outcome is not None:  # the child ended before its parent heard it started
                self._settle_child(suspension, outcome, self._now)
            elif request.wake_at is not None and request.wake_at <= self._now:
                self._time_out_child(suspension, self._now)  # its timeout passed already

    def _end_wait(
        self,
        suspension: Suspension,
        port: str,
        data: Any,
        now: float,
        *,
        finish: bool = True,
    ) -> list[Command]:
        """Complete a waiting run with ``data`` on ``port``. A paused execution stays
        paused: the data is routed, and what it makes ready runs once unpaused."""
        index, run, waited = self._stop_waiting(suspension, now)
        result = attrs.evolve(waited, data=data, port=port)
        self._complete_run(index, run, port, result)
        return self._finish_event(now) if finish else []

    def _settle_child(self, suspension: Suspension, outcome: ChildOutcome, now: float) -> None:
        """End the wait of ``suspension`` with the child's outcome (no event finishing)."""
        if outcome.status == "completed":
            self._end_wait(suspension, suspension.resume_port, outcome.output, now, finish=False)
            return
        index, run, waited = self._stop_waiting(suspension, now)
        error = ErrorInfo(
            code=f"child_{outcome.status}",
            message=f"child execution {outcome.child_execution_id} {ended_how(outcome)}",
            details={
                "child_execution_id": outcome.child_execution_id,
                "status": outcome.status,
                "error": outcome.error.to_dict() if outcome.error is not None else None,
            },
        )
        self._fail_run(index, run, error, attrs.evolve(waited, error=error))

    def _time_out_child(self, suspension: Suspension, now: float) -> None:
        """The node's ``timeout`` passed while it waited for its ``sync`` child: the
        child is cancelled and the node fails with ``timeout`` (no event finishing)."""
        index, run, waited = self._stop_waiting(suspension, now)
        node = self._nodes[index]
        child_id = suspension.child_execution_id
        assert child_id is not None
        timeout = node.timeout or 0.0
        error = ErrorInfo(
            code="timeout",
            message=f"node {node.key!r} waited longer than its timeout ({timeout:g} s) for "
            f"child execution {child_id}, which was cancelled",
            details={"timeout": timeout, "child_execution_id": child_id},
        )
        self._commands.append(
            CancelChildren(
                execution_ids=(child_id,),
                reason=f"its parent's node {node.key!r} timed out after {timeout:g} s",
            )
        )
        self._fail_run(index, run, error, attrs.evolve(waited, error=error))

    def _stop_waiting(self, suspension: Suspension, now: float) -> tuple[int, NodeRun, NodeResult]:
        """Remove ``suspension``; return its node's index, its run, and a result for the
        run (no data yet) timed from when the wait began."""
        self._now = now
        self.waits.remove(suspension.execution_index)
        if self.status == "suspended":
            self.status = "running"
            self.journal.resumed(self._commands, now, "wait")
        run = self.trail[suspension.execution_index]
        started = suspension.started_at if suspension.started_at is not None else now
        result = NodeResult(
            node_key=run.node_key,
            run_index=run.run_index,
            execution_index=run.execution_index,
            attempt=run.attempt,
            started_at=started,
            finished_at=now,
            duration_ms=max(0.0, (now - started) * 1000.0),
        )
        return self._index[run.node_key], run, result

    def _stop(self, status: ExecutionStatus, error: ErrorInfo) -> None:
        """End the execution with ``status``: runs in flight and waiting are cancelled.

        The routing state is left as it is (ready nodes stay on the stack), so a failed
        execution can be retried from where it stopped.
        """
        self.status = status
        self.error = error
        self._pausing = False
        # Runs in flight, waiting, and in flight when the execution was last saved (a
        # restored execution whose runs were not dispatched again yet).
        stopped = sorted([*self._running, *self.waits, *self._redispatch])
        children: list[str] = []
        for execution_index in stopped:
            self._running.pop(execution_index, None)
            self._redispatch.pop(execution_index, None)
            suspension = self.waits.remove(execution_index)
            if suspension is not None and suspension.child_execution_id is not None:
                children.append(suspension.child_execution_id)
            cancelled = attrs.evolve(self.trail[execution_index], status="cancelled")
            self.trail.record(cancelled)
            self.journal.run_ended(self._commands, self._now, cancelled)
        reason = f"parent execution {self.execution_id} {ENDED_HOW.get(status, status)}"
        if stopped:
            self._commands.append(CancelRuns(execution_indexes=tuple(stopped), reason=reason))
        if children:
            self._commands.append(CancelChildren(execution_ids=tuple(children), reason=reason))

    def _time_out(self, now: float) -> list[Command]:
        """End the execution ``timed_out`` if its deadline has passed (else nothing)."""
        if self.finished or self.deadline is None or now < self.deadline:
            return []
        self._now = now
        timeout = self.graph.workflow.settings.timeout or 0.0
        self._stop(
            "timed_out",
            ErrorInfo(
                code="timed_out",
                message=f"execution {self.execution_id} ran past its timeout "
                f"({timeout:g} s, settings.timeout) and was stopped",
                details={"timeout": timeout},
            ),
        )
        return self._finish_event(now)

    def _failed_run(self) -> NodeRun | None:
        """The run that failed the execution: the last failed run not routed on."""
        for run in self.trail.newest_first():
            if run.status == "failed" and run.port is None:
                index = self._index[run.node_key]
                if self.flow.state(index) == DONE:
                    return run
        return None

    def _run_again(self, run: NodeRun) -> None:
        index = self._index[run.node_key]
        self._dispatch(index, again=self._next_attempt(index, run, run.attempt + 1))
