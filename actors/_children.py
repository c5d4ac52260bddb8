"""Child executions: starting them, and telling parents when they end (DESIGN §5.6).

A node's worker asks the engine to start the child an action asked for
(:class:`prana.ExecuteWorkflow`). The child's id follows from the parent run, so a
node that runs again after a crash finds its child instead of starting another; the
child is saved before the worker reports back, so a parent never waits for a child
that does not exist.

When a ``sync`` child ends, its supervisor tells the engine, which hands the outcome
to the parent wherever it is (:meth:`LiveExecutions.deliver`). A parent that runs in
another engine, or an outcome lost to a crash, is found by :meth:`ChildExecutions.reconcile`,
which the engine runs at start-up and with every heartbeat: every node waiting for a
child that has ended hears of it.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import anyio
import attrs

from prana._commands import Dispatch
from prana._errors import (
    ExecutionNotFound,
    ExpressionError,
    InvalidTransition,
    NodeError,
    PranaError,
    WorkflowValidationError,
)
from prana._loading import load_workflow
from prana._machine import ExecutionMachine
from prana._model import Workflow
from prana._records import FINAL_STATUSES, ChildOutcome, Execution
from prana._subworkflows import ExecuteWorkflow, child_execution_id
from prana._triggers import TriggerError, trigger_input
from prana._waiting import ENDED_HOW
from prana.storage import Store

from ._catalog import Catalog
from ._clock import Clock
from ._control import control
from ._live import WATCH_POLL, LiveExecutions

logger = logging.getLogger("prana.engine")


class ChildExecutions:
    """What an engine does for its supervisors about children (the supervisor's
    ``Parent``): start them, report their end, cancel them."""

    def __init__(
        self,
        *,
        live: LiveExecutions,
        store: Store,
        catalog: Catalog,
        clock: Clock,
        max_depth: int,
    ) -> None:
        self._live = live
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._max_depth = max_depth
        # Batches being run (workflow.execute with items), by parent and run; and
        # by child id, where a child's outcome goes.
        self._batches: dict[tuple[str, int], _Batch] = {}
        self._batch_of: dict[str, _Batch] = {}

    async def start_child(
        self, parent: ExecutionMachine, dispatch: Dispatch, request: ExecuteWorkflow
    ) -> str:
        """Start the child execution ``request`` asks for and return its id once it is
        saved; if this run of the node started it already, return that child's id.

        Raises :class:`NodeError` (which fails the node) when the workflow is unknown
        or invalid, its concurrency key cannot be rendered, or when starting it would
        nest executions deeper than the engine's ``max_depth``.
        """
        return await self._start(parent, request, child_execution_id(dispatch.context))

    async def _start(
        self, parent: ExecutionMachine, request: ExecuteWorkflow, child_id: str
    ) -> str:
        live = self._live.get(child_id)
        if live is not None:
            await live.wait_saved()
            return child_id
        if await self._store.execution_status(child_id) is not None:
            return child_id  # started before this run was carried out again
        return await self._create(parent, request, child_id)

    async def _create(
        self, parent: ExecutionMachine, request: ExecuteWorkflow, child_id: str
    ) -> str:
        """Start a child that does not exist yet; its id once it is saved."""
        depth = parent.depth + 1
        if depth > self._max_depth:
            raise NodeError(
                f"starting workflow {request.workflow!r} would nest executions {depth} deep, "
                f"past this engine's limit of {self._max_depth} (Engine(max_depth=...)); a "
                "workflow that calls itself needs a condition that ends the recursion",
                code="depth_limit",
                details={"depth": depth, "max_depth": self._max_depth},
            )
        workflow = await self._find_workflow(request.workflow, request.version)
        try:
            graph = self._catalog.compile(workflow, trigger=request.trigger)
        except WorkflowValidationError as exc:
            raise NodeError(
                f"workflow {request.workflow!r} cannot run: {exc}", code="invalid_workflow"
            ) from None
        try:
            child_input = trigger_input(graph, request.input, self._clock.now())
        except TriggerError as exc:
            raise NodeError(str(exc), code="invalid_input") from None
        async with self._live.turn() as turn:
            try:
                supervisor = await self._live.start(
                    graph,
                    child_input,
                    child_id,
                    turn,
                    parent_execution_id=parent.execution_id,
                    root_execution_id=parent.root_execution_id or parent.execution_id,
                    mode=request.mode,
                    depth=depth,
                )
            except ExpressionError as exc:  # its concurrency key
                raise NodeError(
                    f"workflow {request.workflow!r} cannot be queued: {exc}",
                    code="expression_error",
                ) from None
        await supervisor.wait_saved()
        return child_id

    async def _find_workflow(self, workflow_id: str, version: int | None) -> Workflow:
        """A workflow the engine knows (registered, or stored by an earlier
        execution): ``version``, or the highest. Raises :class:`NodeError` if there is
        none."""
        versions = self._catalog.registered.get(workflow_id, {})
        if version is None and versions:
            return versions[max(versions)]
        if version is not None and version in versions:
            return versions[version]
        stored = await self._store.find_workflow(workflow_id, version)
        if stored is not None:
            return load_workflow(
                stored.definition, actions=self._catalog.actions, limits=self._catalog.limits
            )
        which = f"{workflow_id!r}" + (f" version {version}" if version is not None else "")
        raise NodeError(
            f"no workflow {which} is registered with this engine or stored; register it "
            "with engine.register(...) ('prana run' registers the workflow files next to "
            "the one it runs)",
            code="unknown_workflow",
            details={"workflow": workflow_id, "version": version},
        )

    def child_finished(self, child: Execution) -> None:
        """A ``sync`` child ended and is saved: tell its parent."""
        if child.parent_execution_id is not None:
            self._live.spawn(self.tell_parent, child.parent_execution_id, outcome_of(child))

    def cancel_children(self, execution_ids: tuple[str, ...], reason: str) -> None:
        """Cancel children whose parent stopped waiting for them."""
        for execution_id in execution_ids:
            self._live.spawn(self._cancel_quietly, execution_id, reason)

    async def tell_parent(self, parent_id: str, outcome: ChildOutcome) -> None:
        """Hand a child's outcome to the parent node waiting for it, wherever it
        waits; a failure is logged (:meth:`reconcile` tries again). A child of a
        batch this engine runs tells the batch."""
        batch = self._batch_of.get(outcome.child_execution_id)
        if batch is not None:
            batch.outcomes.append(outcome)
            batch.changed.set()
            return
        try:
            await self._live.deliver(parent_id, outcome)
        except PranaError as exc:
            logger.warning(
                "could not tell execution %s that child %s ended: %s",
                parent_id,
                outcome.child_execution_id,
                exc,
            )

    async def reconcile(self) -> None:
        """Tell every node waiting for a child that has ended (children that ended
        while no process ran, or whose parent waits in the store); cancel the
        ``sync`` children of parents that ended without them (a crash between
        cancelling a parent and cancelling its children). Raises
        :class:`StoreError` if the store cannot say."""
        for suspension in await self._store.finished_children():
            assert suspension.child_execution_id is not None
            child = await self._store.load_execution(suspension.child_execution_id)
            if child is not None:
                await self.tell_parent(suspension.execution_id, outcome_of(child.to_execution()))
        for child_id, parent_id, status in await self._store.abandoned_children():
            await self._cancel_quietly(child_id, f"its parent execution {parent_id} is {status}")

    # ------------------------------------------------------------------ batches

    async def run_children(
        self,
        parent: ExecutionMachine,
        dispatch: Dispatch,
        request: ExecuteWorkflow,
        deadline: float | None,
    ) -> list[Any]:
        """Start one child per item of ``request.items`` and return, in item order,
        their outputs (``sync``: at most ``request.concurrency`` run at once) or their
        ids (``fire_and_forget``: all started at once).

        The node run waits for its batch in memory, as a run in flight. Each child's
        id follows from the run, its attempt and the item, so a run carried on after a
        crash finds the children started before it (and those that ended) and starts
        only the rest; a retry (a new attempt) reuses the outputs of the items whose
        child completed in an earlier attempt (of ``fire_and_forget``, every child an
        earlier attempt started). A child that does not complete fails the node with
        an error naming its item (the others still running are cancelled), and so
        does ``deadline`` passing (the node's timeout). Raises :class:`NodeError` for
        those.
        """
        items = list(request.items or ())
        ids = [child_execution_id(dispatch.context, item) for item in range(len(items))]
        single = attrs.evolve(request, items=None)
        if request.mode == "fire_and_forget":
            for item, child_id in enumerate(ids):
                earlier = await self._started_before(dispatch, item)
                if earlier is not None:
                    ids[item] = earlier
                else:
                    await self._start(parent, attrs.evolve(single, input=items[item]), child_id)
            return [{"execution_id": child_id, "workflow": request.workflow} for child_id in ids]
        key = (parent.execution_id, dispatch.run.execution_index)
        batch = _Batch(node_key=dispatch.run.node_key)
        self._batches[key] = batch
        self._batch_of.update(dict.fromkeys(ids, batch))
        try:
            if deadline is None:
                return await self._run_batch(parent, dispatch, single, items, ids, batch)
            with self._clock.cancel_at(deadline) as scope:
                outputs = await self._run_batch(parent, dispatch, single, items, ids, batch)
            if not scope.cancelled_caught:
                return outputs
            timeout = dispatch.timeout or 0.0
            raise NodeError(
                f"node {batch.node_key!r} waited longer than its timeout ({timeout:g} s) for "
                f"its batch of {len(ids)} children; the {len(batch.running)} still running "
                "were cancelled",
                code="timeout",
                details={"timeout": timeout, "cancelled": sorted(batch.running)},
            )
        except NodeError as exc:
            self._cancel_running(batch, f"its parent's node {batch.node_key!r} failed: {exc}")
            raise
        finally:
            del self._batches[key]
            for child_id in ids:
                self._batch_of.pop(child_id, None)

    async def _run_batch(
        self,
        parent: ExecutionMachine,
        dispatch: Dispatch,
        request: ExecuteWorkflow,
        items: list[Any],
        ids: list[str],
        batch: _Batch,
    ) -> list[Any]:
        outputs: list[Any] = [None] * len(ids)
        running = batch.running  # child id -> item
        started = ended = 0
        while ended < len(ids):
            while started < len(ids) and len(running) < request.concurrency:
                item, child_id = started, ids[started]
                started += 1
                outcome = await self._completed_before(dispatch, item)
                if outcome is None:
                    outcome = await self._start_or_find(
                        parent, attrs.evolve(request, input=items[item]), child_id
                    )
                if outcome is None:
                    running[child_id] = item
                else:
                    outputs[item] = self._settled(batch, item, outcome)
                    ended += 1
            while running and not batch.outcomes:
                await self._wait_for_outcomes(batch)
            while batch.outcomes:
                outcome = batch.outcomes.popleft()
                item_or_none = running.pop(outcome.child_execution_id, None)
                if item_or_none is not None:
                    outputs[item_or_none] = self._settled(batch, item_or_none, outcome)
                    ended += 1
        return outputs

    async def _start_or_find(
        self, parent: ExecutionMachine, request: ExecuteWorkflow, child_id: str
    ) -> ChildOutcome | None:
        """Start the child, or find it started before: ``None`` while it runs, its
        outcome if it has ended."""
        live = self._live.get(child_id)
        if live is not None:
            await live.wait_saved()
            return None
        status = await self._store.execution_status(child_id)
        if status in FINAL_STATUSES:
            return await self._outcome(child_id)
        if status is None:
            await self._create(parent, request, child_id)
        return None  # running or waiting: here, in the store or in another engine

    async def _completed_before(self, dispatch: Dispatch, item: int) -> ChildOutcome | None:
        """The outcome of a child an earlier attempt of the run started for ``item``
        that completed, if any: a retry of a batch runs only the items that did not
        complete."""
        for attempt in range(dispatch.context.attempt - 1, 0, -1):
            child_id = child_execution_id(dispatch.context, item, attempt=attempt)
            if await self._store.execution_status(child_id) == "completed":
                return await self._outcome(child_id)
        return None

    async def _started_before(self, dispatch: Dispatch, item: int) -> str | None:
        """The id of a child an earlier attempt of the run started for ``item``, if any."""
        for attempt in range(dispatch.context.attempt - 1, 0, -1):
            child_id = child_execution_id(dispatch.context, item, attempt=attempt)
            if await self._store.execution_status(child_id) is not None:
                return child_id
        return None

    async def _outcome(self, child_id: str) -> ChildOutcome | None:
        stored = await self._store.load_execution(child_id)
        return None if stored is None else outcome_of(stored.to_execution())

    async def _wait_for_outcomes(self, batch: _Batch) -> None:
        """Until a child of the batch tells it it ended, or (every ``WATCH_POLL``
        seconds) the store says so of a child this engine does not run: one that
        another engine carries on, or whose word was lost to a crash."""
        batch.changed = anyio.Event()
        with anyio.move_on_after(WATCH_POLL):
            await batch.changed.wait()
            return
        for child_id in list(batch.running):
            if child_id in self._live:
                continue
            if await self._store.execution_status(child_id) in FINAL_STATUSES:
                outcome = await self._outcome(child_id)
                if outcome is not None:
                    batch.outcomes.append(outcome)

    def _settled(self, batch: _Batch, item: int, outcome: ChildOutcome) -> Any:
        """The output of a child that completed; a child that did not fails the node
        (:meth:`run_children` then cancels the others still running)."""
        if outcome.status == "completed":
            return outcome.output
        how = ENDED_HOW.get(outcome.status, outcome.status)
        if outcome.error is not None:
            how += f": {outcome.error.message}"
        raise NodeError(
            f"item {item} of the batch: child execution {outcome.child_execution_id} {how}",
            code=f"child_{outcome.status}",
            details={
                "item": item,
                "child_execution_id": outcome.child_execution_id,
                "status": outcome.status,
                "error": outcome.error.to_dict() if outcome.error is not None else None,
            },
        )

    def _cancel_running(self, batch: _Batch, reason: str) -> None:
        if batch.running:
            self.cancel_children(tuple(batch.running), reason)

    def cancel_batch(self, execution_id: str, execution_index: int, reason: str) -> None:
        """The run ``execution_index`` of ``execution_id`` was cancelled: cancel the
        children still running of the batch it was running, if any."""
        batch = self._batches.get((execution_id, execution_index))
        if batch is not None:
            self._cancel_running(batch, reason)

    async def _cancel_quietly(self, execution_id: str, reason: str) -> None:
        """Cancel a child whose parent stopped waiting for it, if it has not ended."""
        try:
            await control(self._live, self._store, execution_id, "cancel", reason)
        except (InvalidTransition, ExecutionNotFound):
            pass  # it ended already
        except PranaError as exc:
            logger.warning("could not cancel child execution %s: %s", execution_id, exc)

    async def past_children(self, execution: Execution) -> Execution:
        """``execution``, or if it waits only for ``sync`` children that are still
        moving (running, or ended and about to tell it), the execution when it next
        stops otherwise or its children stop moving."""
        while _waits_for_children_only(execution) and await self._children_moving(execution):
            ids = [execution.id, *(s.child_execution_id or "" for s in execution.suspensions)]
            changed = [self._live.watch(i) for i in ids]
            with anyio.move_on_after(WATCH_POLL):
                async with anyio.create_task_group() as group:
                    for event in changed:
                        group.start_soon(_cancel_when_set, event, group.cancel_scope)
            supervisor = self._live.get(execution.id)
            if supervisor is not None:
                execution = await supervisor.wait_stop()
            else:
                execution = (await self._live.load(execution.id)).to_execution()
        return execution

    async def _children_moving(self, execution: Execution, depth: int = 0) -> bool:
        for suspension in execution.suspensions:
            child_id = suspension.child_execution_id or ""
            if child_id in self._live:
                return True
            stored = await self._store.load_execution(child_id)
            if stored is None or stored.status in FINAL_STATUSES:
                return True  # ended (or not yet saved): the parent is about to hear
            child = stored.to_execution()
            deeper = depth < self._max_depth and _waits_for_children_only(child)
            if deeper and await self._children_moving(child, depth + 1):
                return True
        return False


@attrs.define(eq=False)
class _Batch:
    """A batch of children being run: those running (id -> item), and the outcomes
    that came and are not taken in yet."""

    node_key: str
    running: dict[str, int] = attrs.field(factory=dict)
    outcomes: deque[ChildOutcome] = attrs.field(factory=deque)
    changed: anyio.Event = attrs.field(factory=anyio.Event)


def outcome_of(child: Execution) -> ChildOutcome:
    """How ``child`` ended, for its parent."""
    return ChildOutcome(
        child_execution_id=child.id,
        status=child.status,
        output=child.output if child.status == "completed" else None,
        error=child.error,
    )


def _waits_for_children_only(execution: Execution) -> bool:
    return (
        execution.status == "suspended"
        and bool(execution.suspensions)
        and all(suspension.kind == "workflow" for suspension in execution.suspensions)
    )


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
