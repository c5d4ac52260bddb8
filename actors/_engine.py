"""The engine: the object an application holds (DESIGN §7, §10).

``async with Engine(...) as engine`` opens the store (refusing to start if it is not
safe to use), then one task group with the checkpoint writer, the timer actor, the
background services (heartbeat, requests, children, the store's upkeep) and a
supervisor task per live execution. At start-up, unless ``recover=False``, it arms
the timers kept in the store and takes over executions whose engine died. Leaving
the block stops it: running executions stop at their last checkpoint and are
released, so any engine on the same store carries them on.

Its methods are the application's API; each hands the work to the object that owns
it: :class:`LiveExecutions` (every execution, live or stored), :mod:`._control`,
:class:`ChildExecutions`, :class:`Schedules`, the :class:`Catalog` of workflows.
Background services follow one failure policy (:mod:`._services`): a store that
fails for a while is retried and reported by :meth:`Engine.health`; only a bug of
prana's ends the engine, with an :class:`InternalError`.

The module runs past 600 lines because the class is the application's whole API, and
most of its lines are the docstrings of its methods (what each does, raises, and how
it behaves on cancellation); each method is short and hands the work on. Splitting
the class would scatter the API, not the work.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Literal

import anyio
import attrs
from anyio import AsyncContextManagerMixin

from prana._commands import Dispatch
from prana._compiler import ExecutionGraph
from prana._errors import (
    ExecutionExists,
    ExecutionNotFound,
    InternalError,
    InvalidTransition,
    PranaError,
    Problem,
)
from prana._json import check_json
from prana._limits import DEFAULT_LIMITS, Limits
from prana._loading import WorkflowSource
from prana._machine import ExecutionMachine
from prana._model import Workflow
from prana._records import (
    FINAL_STATUSES,
    Execution,
    ExecutionStatus,
    NodeRun,
    StoredExecution,
    Suspension,
)
from prana._registry import ActionRegistry
from prana._rerun import ORIGINAL, one_node_state, rerun_state
from prana._subworkflows import DEFAULT_MAX_DEPTH
from prana._triggers import start_difference, trigger_input
from prana._validation import MAX_PRIORITY
from prana._webhooks import WebhookRoute
from prana.storage import EngineBeat, MemoryStore, Store, open_store

from ._catalog import Catalog
from ._children import ChildExecutions
from ._clock import (
    Clock,
    SystemClock,
    VirtualClock,
    event_execution_id,
    keyed_execution_id,
    new_execution_id,
)
from ._control import control, deliver_requests
from ._explain import Explanation, explain
from ._handle import DEFAULT_EVENT_BUFFER
from ._handle import ExecutionHandle as ExecutionHandle
from ._live import NOT_RUNNING, LiveExecutions
from ._ownership import Leases, dead_owners, new_owner_id
from ._queue import QueueService
from ._schedules import ScheduleInfo, Schedules, ScheduleSlot
from ._services import BackgroundServices, EngineHealth
from ._subscription import Middleware, Publisher, Subscription, as_link
from ._supervision import LeaseLost, Lost, ResumeRequest
from ._supervisor import ExecutionSupervisor
from ._tally import Durations, Tally
from ._timers import TimerActor, arm_due_timers, fire_timer
from ._turns import DEFAULT_STEPS_AT_ONCE
from ._worker import call_action, private_copy
from ._workers import WorkerTasks
from ._writer import CheckpointWriter

logger = logging.getLogger("prana.engine")

Durability = Literal["off", "normal", "full"]


@attrs.frozen(kw_only=True)
class EngineStatistics:
    """Counts of what an engine has done: ``live_executions`` in memory now,
    ``commits`` (transactions) and ``checkpoints`` saved since it started; since the
    engine was made, ``node_runs`` by outcome (``completed``, ``failed``,
    ``suspended``), how long the runs took (``node_run_times``, the action's own
    time) and how long the store took to commit (``commit_times``)."""

    live_executions: int
    commits: int
    checkpoints: int
    node_runs: Mapping[str, int]
    node_run_times: Durations
    commit_times: Durations


DEFAULT_LEASE = 30.0  # seconds an engine's hold on an execution lasts unrenewed


class Engine(AsyncContextManagerMixin):
    """Runs workflows durably. Use it as ``async with Engine(...) as engine:``.

    ``store``: ``None`` or ``"memory://"`` keeps executions in memory;
    ``"sqlite:///path.db"`` (or a path, or a :class:`prana.storage.Store`) keeps them
    in SQLite, where they survive a restart. ``durability``: ``"normal"`` (the default
    with SQLite) saves every node's result before anything depends on it; ``"full"``
    also makes SQLite flush every commit to disk; ``"off"`` (the default in memory)
    saves only when an execution starts, waits and ends.

    ``actions`` is the registry of actions (by default every built-in action). ``env``
    is what templates see as ``env`` (default: this process's environment; pass
    ``{}`` to hide it). ``middleware`` is a chain every event passes through
    before it reaches the subscribers: ``hook(event, next)`` passes it on, changed
    or not, with ``next(event)``, or stops it by not calling ``next``; a hook of one
    argument only looks. A hook that raises is logged and skipped. Hooks must not
    block. ``clock`` is the workflows' clock (a
    :class:`prana.testing.VirtualClock` in tests). ``lease`` is how long, in
    seconds, an engine that stops answering keeps its executions before another
    takes them; ``heartbeat`` how often it renews its leases and looks for abandoned
    executions (default: a third of ``lease``). ``recover=False`` leaves other
    engines' abandoned executions alone. ``workflows`` are served as by
    :meth:`register`; ``schedules=False`` does not run their schedule triggers.
    ``steps_at_once`` is how many of its executions take a step (start, are
    restored, take a node's result in, commit) between two rounds of the event loop,
    so that the application's own tasks keep running while a thousand executions
    work (decision 0039): more gives more throughput, fewer a shorter hold of the loop.
    ``max_running`` is the most executions it runs at once: past it, new executions
    are saved ``queued`` and started by whichever engine on the store has room
    first (this one, once some of its own have stopped). ``poll`` is how often it
    looks at the queue and at control requests left for it without being told (a
    PostgreSQL store tells it at once; default: every second, or every heartbeat if
    shorter).
    """

    def __init__(
        self,
        *,
        actions: ActionRegistry | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        durability: Durability | None = None,
        env: Mapping[str, str] | None = None,
        middleware: Iterable[Middleware] = (),
        clock: Clock | None = None,
        lease: float = DEFAULT_LEASE,
        heartbeat: float | None = None,
        recover: bool = True,
        workflows: Iterable[Workflow | WorkflowSource] = (),
        max_depth: int = DEFAULT_MAX_DEPTH,
        schedules: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        steps_at_once: int = DEFAULT_STEPS_AT_ONCE,
        max_running: int | None = None,
        poll: float | None = None,
    ) -> None:
        if durability not in (None, "off", "normal", "full"):
            raise ValueError(f"durability must be 'off', 'normal' or 'full', not {durability!r}")
        if steps_at_once < 1:
            raise ValueError(f"steps_at_once must be at least 1, not {steps_at_once!r}")
        if max_running is not None and max_running < 1:
            raise ValueError(f"max_running must be at least 1, not {max_running!r}")
        self.max_running = max_running
        self.actions = actions if actions is not None else ActionRegistry()
        self.owner = new_owner_id()
        self._store_option = store
        self._durability = durability
        self._env: Mapping[str, str] = dict(os.environ) if env is None else dict(env)
        self._middleware = tuple(as_link(hook) for hook in middleware)
        self.clock: Clock = clock or SystemClock()
        self._lease = lease
        self._heartbeat = heartbeat if heartbeat is not None else lease / 3
        self._poll = poll if poll is not None else min(1.0, self._heartbeat)
        self._recover = recover
        self._run_schedules = schedules
        self.max_depth = max_depth
        self.limits = limits
        self._steps_at_once = steps_at_once
        self._catalog = Catalog(self.actions, limits)
        self._engine_subscriptions: set[Subscription] = set()
        self._background = BackgroundServices()
        self._tally = Tally()
        self._store: Store | None = None
        self._live: LiveExecutions | None = None
        self._children: ChildExecutions | None = None
        self._queue: QueueService | None = None
        self._last_beat: EngineBeat | None = None
        self._schedules: Schedules | None = None
        self._writer: CheckpointWriter | None = None
        self._timer_actor: TimerActor | None = None
        for workflow in workflows:
            self.register(workflow)

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Engine]:
        store = open_store(
            self._store_option, synchronous="FULL" if self._durability == "full" else None
        )
        durability = self._durability or ("off" if isinstance(store, MemoryStore) else "normal")
        await store.open()
        self._store = store
        leases = Leases(store, owner=self.owner, term=self._lease)
        writer = self._writer = CheckpointWriter(store, leases, self.clock.now, self._tally)
        timers = self._timer_actor = TimerActor(
            self.clock,
            self._fire_timer,
            self._background,
            # Other engines' waits too, unless told to leave them alone.
            load=partial(_stored_timers, store) if self._recover else None,
        )
        background = self._background
        queue = self._queue = QueueService(store, leases, self._poll, self.max_running)
        held: list[str] = []
        body_error: BaseException | None = None
        try:
            async with anyio.create_task_group() as task_group:
                workers = WorkerTasks(task_group)
                await task_group.start(workers.keep, name="prana workers")
                live = self._live = LiveExecutions(
                    store=store,
                    catalog=self._catalog,
                    leases=leases,
                    writer=writer,
                    timers=timers,
                    clock=self.clock,
                    durable=durability != "off",
                    env=self._env,
                    limits=self.limits,
                    tally=self._tally,
                    queue=queue,
                    others_alive=self._others_alive,
                    publisher=lambda: Publisher(self._middleware, self._engine_subscriptions),
                    parent=lambda live: ChildExecutions(
                        live=live,
                        store=store,
                        catalog=self._catalog,
                        clock=self.clock,
                        max_depth=self.max_depth,
                    ),
                    background=background,
                    task_group=task_group,
                    workers=workers,
                    steps_at_once=self._steps_at_once,
                )
                children = live.parent
                assert isinstance(children, ChildExecutions)
                self._children = children
                if self._run_schedules:
                    self._schedules = Schedules(
                        live=live,
                        store=store,
                        catalog=self._catalog,
                        clock=self.clock,
                        timers=timers,
                    )
                if isinstance(self.clock, VirtualClock) and self.clock.autojump:
                    task_group.start_soon(self.clock.keep_time)
                await task_group.start(writer.run)
                await task_group.start(timers.run)
                background.start_keeping(task_group, "store upkeep", store.maintain)
                background.service("timers")  # known from the start: each fired under it
                background.service("executions")  # carried on after the store failed
                await self._note_beat(store)  # on the store's list of engines first
                if self._recover:
                    # Start-up: what other engines left behind.
                    await self._take_orphans(leases)
                    await children.reconcile()
                await self._catalog.sync_kept(store)
                if self._schedules is not None:
                    for served in list(self._catalog.served.values()):
                        await self._schedules.arm(served)
                # What other engines on the store start or stop serving (the daemon's
                # POST and DELETE /api/workflows), served here too within a beat.
                background.start_every(
                    task_group, "kept workflows", min(5.0, self._heartbeat), self._sync_kept
                )
                background.start_every(
                    task_group, "heartbeat", self._heartbeat, lambda: self._beat(leases)
                )
                background.service("queue")
                task_group.start_soon(
                    queue.run, live, partial(background.retrying, "queue"), name="prana queue"
                )

                def heard(topic: str) -> None:  # from another process on the store
                    if topic in ("queue", "listening"):
                        queue.moved()
                    if topic in ("control", "listening"):
                        live.spawn(deliver_requests, live, store, self.owner, counted=False)

                background.service("notifications")
                task_group.start_soon(
                    background.retrying,
                    "notifications",
                    partial(store.listen, heard),
                    name="prana notifications",
                )
                background.start_every(
                    task_group,
                    "control requests",
                    self._poll,
                    lambda: deliver_requests(live, store, self.owner),
                )
                if self._recover:
                    background.start_every(
                        task_group, "children", self._heartbeat, partial(self._lead, children)
                    )
                try:
                    yield self
                except BaseException as exc:  # re-raised below, unwrapped from the group
                    body_error = exc
                finally:
                    live.close()
                    held = [
                        supervisor.execution_id
                        for supervisor in live.supervisors()
                        if supervisor.machine.status in ("running", "queued")
                    ]
                    task_group.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            bug = _internal_error(group)
            if bug is not None:  # a service's: it ended the engine
                raise bug from None
            if body_error is not None:
                raise body_error from None
            raise
        finally:
            for subscription in list(self._engine_subscriptions):
                subscription.close()
            with anyio.move_on_after(10, shield=True):
                try:
                    if held:
                        await leases.release(held)
                    await store.leave(self.owner)
                except PranaError:
                    logger.warning(
                        "could not release executions; their leases expire in %s s",
                        self._lease,
                    )
                await store.aclose()
            self._store = self._live = self._children = self._schedules = None
        if body_error is not None:
            raise body_error

    async def _beat(self, leases: Leases) -> None:
        """The heartbeat: renew the leases of the executions running here (one that
        another engine took stops at once); unless ``recover=False``, take over those
        of engines that died and arm the timers that come due before the next beat,
        whichever engine set them."""
        live, store = self._require_live(), self._require_store()
        await self._note_beat(store)
        running = live.supervisors()
        if running:
            held, deadline = await leases.renew([s.execution_id for s in running])
            for supervisor in running:
                if supervisor.execution_id in held:
                    supervisor.lease_until = max(supervisor.lease_until, deadline)
                elif (
                    # Not one whose lease its own save wrote while the renewal ran (a
                    # take), nor one that has not saved yet: those are fenced anyway.
                    -math.inf < supervisor.lease_until <= deadline
                    and live.get(supervisor.execution_id) is supervisor
                ):
                    supervisor.deliver(LeaseLost())
        if self._recover and self._timer_actor is not None:
            await self._take_orphans(leases)
            await arm_due_timers(store, self._timer_actor, self.clock, self._heartbeat)

    async def _take_orphans(self, leases: Leases) -> None:
        """Take over running executions whose engine died (its lease expired, or its
        process is gone) and carry them on."""
        store, beat = self._require_store(), self._last_beat
        gone = [] if beat is None else [*beat.gone, *dead_owners(beat.alive)]
        taken = await store.claim_orphans(
            owner=self.owner, lease_expires=leases.expiry(), now=time.time(), dead_owners=gone
        )
        await self._require_live().recover(taken)

    async def _note_beat(self, store: Store) -> None:
        """Say on the store that this engine is alive; learn whether it leads, and
        which engines are gone (their executions are taken over)."""
        self._last_beat = await store.beat(self.owner, now=time.time(), stale_after=self._lease)

    @property
    def leader(self) -> bool:
        """Whether this engine leads the engines on its store at its last heartbeat:
        the leader alone sweeps for children whose parents ended (the other duties
        are shared: each claim is made once by the store)."""
        return self._last_beat is not None and self._last_beat.leader

    def _others_alive(self) -> bool:
        """Whether other engines on the store were alive at the last heartbeat."""
        beat = self._last_beat
        return beat is not None and any(owner != self.owner for owner in beat.alive)

    async def _lead(self, children: ChildExecutions) -> None:
        """The duties of the leader, at each heartbeat."""
        if self.leader:
            await children.reconcile()

    # ------------------------------------------------------------------ running

    def compile(
        self, workflow: Workflow | WorkflowSource, *, trigger: str | None = None
    ) -> ExecutionGraph:
        """Validate and compile a workflow against this engine's actions.

        Compiled graphs are cached by workflow id, version and trigger. Raises
        :class:`WorkflowValidationError` listing every problem.
        """
        return self._catalog.compile(workflow, trigger=trigger)

    def register(self, workflow: Workflow | WorkflowSource) -> Workflow:
        """Serve a workflow: ``workflow.execute`` nodes find it by id, its webhook
        triggers answer :meth:`start_webhook`, its event triggers :meth:`publish`, and
        its schedule triggers run while the engine is open (unless
        ``Engine(schedules=False)``). The highest version
        registered of an id is the one served.

        Raises :class:`WorkflowValidationError` if it is invalid, and
        :class:`TriggerError` if another workflow answers one of its webhooks.
        """
        workflow, served = self._catalog.serve(workflow)
        if served and self._schedules is not None and self._live is not None:
            self._live.spawn(self._schedules.arm_quietly, workflow)
        return workflow

    def validate(self, workflow: Workflow | WorkflowSource) -> Workflow:
        """Check a workflow against this engine's actions, for each of its triggers,
        without serving it; return it loaded. Raises :class:`WorkflowValidationError`
        listing every problem."""
        return self._catalog.checked(workflow)

    async def load_workflow(self, workflow: Workflow | WorkflowSource) -> Workflow:
        """Load a workflow and check it as :meth:`validate` does, on a worker thread: a
        definition of thousands of nodes takes a while to check (about half a second
        for 10 000), which the event loop then does not wait for. Its compiled graphs
        are kept: starting, registering or checking it again compiles nothing. Raises
        :class:`WorkflowValidationError` listing every problem."""
        return await self._catalog.checked_apart(workflow)

    def warnings(self, workflow: Workflow | WorkflowSource) -> tuple[Problem, ...]:
        """What is questionable in a valid workflow, checked as :meth:`validate`
        checks it: the nodes that no trigger leads to. Raises
        :class:`WorkflowValidationError` listing every problem if it is invalid."""
        return self._catalog.warnings(self._catalog.checked(workflow))

    def served(self) -> list[Workflow]:
        """The workflows this engine serves (the highest version registered of each
        id), by id."""
        served = self._catalog.served
        return [served[workflow_id] for workflow_id in sorted(served)]

    async def keep_serving(self, workflow: Workflow | WorkflowSource) -> Workflow:
        """Serve a workflow as :meth:`register` does, and keep it in the store: every
        engine that opens the store serves it from then on (this one after a restart
        too; the daemon's ``POST /api/workflows``), until another definition of its id
        is kept. Raises as :meth:`register` does."""
        served = self.register(await self._catalog.checked_apart(workflow))
        await self._catalog.keep(served, self._require_store(), self.clock.now())
        return served

    async def stop_serving(self, workflow_id: str) -> bool:
        """Serve ``workflow_id`` no more: its webhooks, events and schedules start
        nothing in this engine, and it is no longer kept in the store
        (:meth:`keep_serving`). Its executions carry on. False if it was not served."""
        served = self._catalog.unserve(workflow_id)
        if self._schedules is not None:
            self._schedules.disarm(workflow_id)
        kept = await self._catalog.forget_kept(workflow_id, self._require_store())
        return served or kept

    async def _sync_kept(self) -> None:
        """Serve the workflows other engines keep in the store, and stop serving those
        they stopped keeping."""
        served, gone = await self._catalog.sync_kept(self._require_store())
        if self._schedules is not None:
            for workflow_id in gone:
                self._schedules.disarm(workflow_id)
            for workflow in served:
                await self._schedules.arm_quietly(workflow)

    def webhook(self, method: str, path: str) -> WebhookRoute:
        """The served workflow and trigger that answer ``method`` ``path``, and how
        the request is answered (``webhook.trigger``'s ``respond``). Raises
        :class:`TriggerError` if no registered workflow answers it."""
        return self._catalog.webhook(method, path)

    async def start_webhook(
        self,
        path: str,
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> ExecutionHandle:
        """Start the registered workflow whose ``webhook.trigger`` answers ``method``
        and ``path``, with the request as ``trigger`` (``trigger.body``,
        ``trigger.headers`` with lower-case names, ``trigger.query``); once per
        ``idempotency_key``, as :meth:`start` (without one, once per value of the
        trigger's ``idempotency_header`` when the request has it). Raises
        :class:`TriggerError` if no registered workflow answers the request."""
        route = self.webhook(method, path)
        if idempotency_key is None and route.idempotency_header is not None:
            named = {name.lower(): value for name, value in (headers or {}).items()}
            idempotency_key = str(named.get(route.idempotency_header) or "") or None
        request = {"method": method, "path": path, "headers": headers, "query": query}
        return await self.start(
            route.workflow,
            {**request, "body": body},
            trigger=route.trigger,
            idempotency_key=idempotency_key,
        )

    async def start(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any = None,
        *,
        trigger: str | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> ExecutionHandle:
        """Start an execution in the background and return its handle, once the
        execution is saved (before its first node runs): an engine that crashes after
        ``start`` returned finds it when it starts again.

        ``priority`` replaces the workflow's ``settings.priority`` for this execution,
        if it is queued (see ``WorkflowSettings``).

        With ``idempotency_key``, the execution's id follows from the key, the
        workflow and the trigger: a second start with the same key (in this engine or
        any other on the same store) starts nothing and raises
        :class:`ExecutionExists` naming the execution the first one started (and
        whether it started with the same input: for a webhook trigger, the same
        request body, whatever the headers of each delivery).

        The workflow's definition is stored (once per version). Raises
        :class:`WorkflowValidationError` before anything starts if the workflow is
        invalid, :class:`TriggerError` if ``input`` does not fit the trigger,
        :class:`PranaError` if the engine is not open, ``input`` is not JSON data, or
        the execution could not be saved.
        """
        if idempotency_key is None:
            return await self._start(workflow, input, trigger, priority=priority)
        graph = self.compile(workflow, trigger=trigger)
        execution_id = keyed_execution_id(idempotency_key, graph.workflow.id, graph.trigger)
        if not await self._exists(execution_id):
            try:
                return await self._start(workflow, input, trigger, execution_id, priority)
            except PranaError:
                if not await self._exists(execution_id):
                    raise  # not a start at the same moment by another
        difference = await self._difference(execution_id, graph, input)
        raise ExecutionExists(
            f"execution {execution_id} was started with idempotency key "
            f"{idempotency_key!r} already"
            + ("" if difference is None else f", with a different {difference}")
            + "; nothing new started",
            execution_id=execution_id,
            same_input=difference is None,
        )

    async def _difference(self, execution_id: str, graph: ExecutionGraph, input: Any) -> str | None:
        """What ``input`` differs in from what ``execution_id`` started ``graph`` with
        (:func:`start_difference`); ``None`` if it would start the same."""
        try:
            given = check_json(input, what="the input", limits=self.limits)
            shaped = trigger_input(graph, given, self.clock.now())
        except PranaError:
            return "input"  # it could not start anything
        supervisor = self._require_live().get(execution_id)
        if supervisor is not None:
            first = supervisor.machine.input
        else:
            first = (await self._require_live().load(execution_id, runs=False)).input
        return start_difference(graph.trigger_kind, first, shaped)

    async def publish(
        self, event: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> list[str]:
        """Start one execution of every registered workflow whose ``event.trigger``
        listens to ``event``, with ``trigger.event`` and ``trigger.data``; return
        their ids once each is saved (none if nothing listens).

        With ``idempotency_key``, the ids follow from the key, the event, the workflow
        and the trigger: publishing again with the same key starts nothing new and
        returns the same ids, in this engine or any other on the same store.
        """
        started = []
        for workflow, trigger in self._catalog.listeners(event):
            execution_id = None
            if idempotency_key is not None:
                execution_id = event_execution_id(idempotency_key, event, workflow.id, trigger)
                if await self._exists(execution_id):
                    started.append(execution_id)
                    continue
            published = {"event": event, "data": data}
            try:
                handle = await self._start(workflow, published, trigger, execution_id)
            except PranaError:
                if execution_id is None or not await self._exists(execution_id):
                    raise
                started.append(execution_id)  # started at the same moment by another
                continue
            started.append(handle.id)
        return started

    async def _start(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any,
        trigger: str | None,
        execution_id: str | None = None,
        priority: int | None = None,
    ) -> ExecutionHandle:
        handed_over = anyio.Event()
        try:
            supervisor = await self._start_new(
                workflow, input, trigger, handed_over, execution_id, priority
            )
            await supervisor.wait_saved()
        finally:
            handed_over.set()  # the execution carries on (or stops) without us
        return ExecutionHandle(supervisor, self._followed)

    async def _exists(self, execution_id: str) -> bool:
        live = self._require_live()
        if live.get(execution_id) is not None:
            return True
        return await self._require_store().execution_status(execution_id) is not None

    async def run(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any = None,
        *,
        trigger: str | None = None,
        priority: int | None = None,
    ) -> Execution:
        """Run a workflow until it ends or waits, and return the execution.

        A failed execution is returned, not raised: look at ``status`` and ``error``.
        An execution that waits (``status == "suspended"``) carries on when resumed
        or woken. Waiting only for ``sync`` child executions does not count: ``run``
        follows the execution until its children end. An execution of a workflow
        with a concurrency key is queued first, and ``run`` returns it ``queued`` if
        its key has no room now (it starts once another execution of the key ends, in
        whichever engine claims it).
        ``priority`` is as in :meth:`start`. Raises :class:`WorkflowValidationError`
        if the workflow is invalid, and :class:`ExpressionError` if its concurrency
        key cannot be rendered.

        The execution runs in a task of the engine's; cancelling ``run`` only stops
        the waiting: it carries on, as one begun with :meth:`start` does (start it
        that way to keep a handle on it).
        """
        supervisor = await self._start_new(workflow, input, trigger, priority=priority)
        execution = await supervisor.wait_stop(supervisor.stop_waiter())
        return await self._followed(execution)

    async def rerun(self, execution_id: str, *, from_node: str, input: Any = ORIGINAL) -> Execution:
        """Run an execution again from ``from_node`` as a new execution of the same
        workflow version, and return it when it ends or waits (as :meth:`run` does).

        Every node that is not downstream of ``from_node`` keeps its latest run of the
        original, output and port, copied into the new trail; ``from_node`` and what
        follows it run again (after a fix to an action, say), and so do the nodes the
        original never ended (a failure that stopped it). The variables and node
        contexts are the original's; ``input`` replaces the trigger's input that
        templates see. Raises :class:`ExecutionNotFound` for an unknown id and
        :class:`InvalidTransition` for a node the workflow does not have, one inside a
        loop (rerun from its entry) or an original still running.
        """
        live = self._require_live()
        original = await live.load(execution_id)
        graph = await self._catalog.graph_for(original, self._require_store())
        async with live.turn() as turn:
            now = self.clock.now()
            state = rerun_state(graph, original, from_node, new_execution_id(now), now, input)
            machine = ExecutionMachine.restored(
                graph, state, env=self._env, limits=self.limits, copy_on_read=private_copy, new=True
            )
            supervisor = await live.start_in_state(machine, turn)
        execution = await supervisor.wait_stop(supervisor.stop_waiter())
        return await self._followed(execution)

    async def run_node(
        self,
        workflow: Workflow | WorkflowSource,
        node_key: str,
        *,
        input: Any = None,
        nodes: Mapping[str, Any] | None = None,
        trigger: str | None = None,
    ) -> NodeRun:
        """Run one node of ``workflow`` alone, once, and return its run: for trying an
        action out. ``input`` is the execution's input (the trigger's output), ``nodes``
        the outputs of other nodes, which its templates read (``nodes.<key>.output``)
        and its connections from them deliver. Nothing is saved and nothing after the
        node runs; ``retry`` does not apply, and a child workflow cannot be started.
        Raises :class:`ValueError` for a node the workflow does not have, or one whose
        connections bring it nothing.
        """
        graph = self.compile(workflow, trigger=trigger)
        now = self.clock.now()
        input = check_json(input, what="the input", limits=self.limits)
        outputs = check_json(dict(nodes or {}), what="nodes", limits=self.limits)
        state = one_node_state(graph, node_key, input, outputs, new_execution_id(now), now)
        machine = ExecutionMachine.restored(
            graph, state, env=self._env, limits=self.limits, copy_on_read=private_copy, new=True
        )
        for command in machine.recover(now):
            if isinstance(command, Dispatch) and command.run.node_key == node_key:
                machine.handle(await call_action(command, self.clock), self.clock.now())
                break
        return machine.snapshot().runs_of(node_key)[-1]

    async def resume(
        self, execution_id: str, data: Any = None, *, node: str | None = None
    ) -> Execution:
        """Resume a waiting node with ``data`` and return the execution when it next
        waits or ends.

        ``node`` names the waiting node when there are several. A node waiting for a
        timer (``wait.interval``, ``wait.until``) resumed without data passes its
        input on, as the timer would; a ``wait.webhook`` whose timeout has passed
        refuses a resume (:class:`InvalidTransition`) and goes on through its
        ``timeout`` port. A paused execution resumed without data or node is
        unpaused (:meth:`unpause`); with them, its node gets the data and it stays
        paused. A running execution whose engine is gone (its process died, or its
        lease expired) is taken over: without data, it is carried on from its last
        checkpoint and followed to its next stop. Raises
        :class:`ExecutionNotFound` for an unknown id and :class:`InvalidTransition`
        when the execution is not waiting there (or runs in another engine); either
        way nothing changes. Cancelling ``resume`` only stops the waiting once the
        execution has taken the data.
        """
        data = check_json(data, what="the resume data", limits=self.limits)
        live = self._require_live()
        if data is None and node is None:
            status = await self._status(execution_id)
            if status == "paused":
                return await self.unpause(execution_id)
            if status == "running":
                return await self._carry_on(execution_id)
        request = ResumeRequest(node_key=node, data=data)
        found = await live.deliver(execution_id, request, claim=True)
        if isinstance(found, StoredExecution):
            raise InvalidTransition(
                f"execution {execution_id} is running in another engine ({found.owner}); "
                "resume it there, or once it waits"
            )
        stopped = found.stop_waiter()
        await request.done.wait()
        try:
            if request.error is not None:
                raise request.error
            execution = await found.wait_stop(stopped)
        except Lost as exc:
            raise InvalidTransition(
                f"execution {execution_id} was resumed or taken by another engine just now; "
                f"see where it stands with 'prana show {execution_id}'"
            ) from exc
        return await self._followed(execution)

    async def _carry_on(self, execution_id: str) -> Execution:
        """Follow a running execution to its next stop, taking it over first if its
        engine is gone (a crashed or interrupted ``prana run``)."""
        found = await self._require_live().carry_on(execution_id)
        if isinstance(found, StoredExecution):
            if found.status == "running":
                raise InvalidTransition(
                    f"execution {execution_id} is running in another engine ({found.owner}); "
                    "it carries on there: follow it with 'prana show'"
                )
            return found.to_execution()
        try:
            execution = await found.wait_stop()
        except Lost as exc:
            raise InvalidTransition(
                f"execution {execution_id} was taken by another engine just now"
            ) from exc
        return await self._followed(execution)

    async def resume_token(self, token: str, data: Any = None) -> Execution:
        """Resume the node waiting for ``token`` (a ``wait.webhook`` token) with
        ``data``; return the execution when it next waits or ends.

        Raises :class:`ExecutionNotFound` if no node waits for the token (it was used,
        or it timed out), changing nothing.
        """
        suspension = await self._require_store().find_token(token)
        if suspension is None:
            raise ExecutionNotFound(
                "resume token not found (it expired or was used); list suspended executions "
                "with 'prana list --status suspended'"
            )
        return await self.resume(suspension.execution_id, data, node=suspension.node_key)

    async def cancel(self, execution_id: str, reason: str | None = None) -> Execution:
        """Cancel an execution that has not ended and return it, ``cancelled``.

        Running nodes are cancelled, waiting nodes stop waiting, and the ``sync``
        children it waits for are cancelled too. It works wherever the execution
        is: running here, waiting in the store, or running in another engine on the
        same store (which applies it within about a second; if that engine is gone,
        this one takes the execution over). Raises :class:`InvalidTransition`
        (changing nothing) if it has ended, and :class:`ExecutionNotFound` for an
        unknown id.
        """
        return await control(
            self._require_live(), self._require_store(), execution_id, "cancel", reason
        )

    async def pause(self, execution_id: str) -> Execution:
        """Pause a running or waiting execution and return it once ``paused``.

        Nothing new is dispatched; nodes already running finish and their results
        are kept. A paused execution is saved and leaves memory; waiting nodes may
        still be resumed, and timers that come due fire when it is unpaused. Works
        wherever the execution is, like :meth:`cancel`. Raises
        :class:`InvalidTransition` if it is not running or waiting.
        """
        return await control(self._require_live(), self._require_store(), execution_id, "pause")

    async def unpause(self, execution_id: str) -> Execution:
        """Carry a paused execution on; return it when it next waits or ends.

        Raises :class:`InvalidTransition` if it is not paused.
        """
        execution = await control(
            self._require_live(), self._require_store(), execution_id, "unpause"
        )
        return await self._followed(execution)

    async def retry(self, execution_id: str) -> Execution:
        """Run a failed execution again from its failed node (a new attempt, same
        idempotency key), with the nodes its failure cut short; completed nodes are
        kept. Returns it when it next waits or ends. Raises
        :class:`InvalidTransition` if it has not failed.
        """
        execution = await control(
            self._require_live(), self._require_store(), execution_id, "retry"
        )
        return await self._followed(execution)

    async def wait(
        self, execution_id: str, *, until: Callable[[Execution], bool] | None = None
    ) -> Execution:
        """Wait until the execution ends (completed, failed, ...) and return it; with
        ``until``, return it at the first stop (an end, a wait, a pause) where
        ``until(execution)`` holds.

        It follows the execution wherever it runs: in memory here, or waiting in the
        store until a timer or a resume carries it on (in this engine or another on
        the same store). An execution waiting for a webhook ends only once resumed:
        bound the wait with ``anyio.fail_after`` where that may never happen.
        Raises :class:`ExecutionNotFound` for an unknown id.
        """
        done = until or (lambda execution: execution.finished)
        return await self._require_live().wait_for(execution_id, done)

    async def follow(self, execution: Execution) -> Execution:
        """``execution``, or, if it waits only for ``sync`` child executions that are
        still moving, or is queued and this engine starts it at once, the execution at
        its next stop (as :meth:`run` returns it)."""
        return await self._followed(execution)

    # ------------------------------------------------------------------ reading

    async def get(self, execution_id: str) -> Execution:
        """The execution with this id, with its whole audit trail: live, or from the
        store.

        Raises :class:`ExecutionNotFound` if there is none.
        """
        live = self._require_live()
        supervisor = live.get(execution_id)
        if supervisor is None:
            return (await live.load(execution_id)).to_execution()
        execution = supervisor.machine.snapshot()
        if not execution.runs_left_out:
            return execution
        # The runs the live execution let go of are in the store (each went out in a
        # checkpoint before); the ones in memory are as new or newer.
        stored = await live.load(execution_id)
        runs = {run.execution_index: run for run in stored.runs}
        runs.update((run.execution_index, run) for run in execution.node_runs)
        return attrs.evolve(
            execution, node_runs=tuple(runs[index] for index in sorted(runs)), runs_left_out=0
        )

    async def workflow_of(self, execution_id: str) -> Workflow:
        """The workflow an execution runs, at the very version it started on (which
        may no longer be served). Raises :class:`ExecutionNotFound` if there is no
        such execution, :class:`PranaError` if its definition is missing from the store."""
        live = self._require_live()
        supervisor = live.get(execution_id)
        if supervisor is not None:
            return supervisor.machine.graph.workflow
        stored = await live.load(execution_id, runs=False)
        return (await self._catalog.graph_for(stored, self._require_store())).workflow

    # ------------------------------------------------------------------ schedules

    async def schedules(self) -> list[ScheduleInfo]:
        """The schedule triggers the store keeps (of every engine on it), with when
        each fires next and whether it is paused, by workflow and trigger."""
        rows = await self._require_store().list_schedules()
        return [
            ScheduleInfo(
                workflow_id=row.workflow_id,
                trigger=row.trigger,
                cron=row.state.spec,
                next_at=row.state.next_at,
                paused=row.state.paused,
            )
            for row in rows
        ]

    async def pause_schedule(self, workflow_id: str, trigger: str) -> ScheduleInfo:
        """Pause a schedule trigger: its times pass without starting anything, in
        every engine on the store, until :meth:`resume_schedule`. Raises
        :class:`PranaError` if there is no such schedule."""
        return await self._set_paused(workflow_id, trigger, True)

    async def resume_schedule(self, workflow_id: str, trigger: str) -> ScheduleInfo:
        """Resume a paused schedule trigger: it fires at its next time (the times
        that passed while it was paused are not made up)."""
        return await self._set_paused(workflow_id, trigger, False)

    async def fire_schedule(self, workflow_id: str, trigger: str) -> ExecutionHandle:
        """Start an execution of a served workflow's schedule trigger now, out of its
        times (which stay as they are). Raises :class:`PranaError` if the workflow
        is not served or ``trigger`` is not one of its schedule triggers."""
        served = self._catalog.served.get(workflow_id)
        if served is None or self._schedules is None:
            raise PranaError(
                f"workflow {workflow_id!r} is not served by this engine with its schedules "
                "(Engine(workflows=...), engine.register; not schedules=False)"
            )
        supervisor = await self._schedules.fire_now(served, trigger)
        return ExecutionHandle(supervisor, self._followed)

    async def _set_paused(self, workflow_id: str, trigger: str, paused: bool) -> ScheduleInfo:
        if not await self._require_store().pause_schedule(workflow_id, trigger, paused):
            known = ", ".join(f"{s.workflow_id}/{s.trigger}" for s in await self.schedules())
            raise PranaError(
                f"no schedule {trigger!r} of workflow {workflow_id!r} is kept in the store "
                f"(schedules: {known or 'none'}); a schedule exists once an engine serves "
                "its workflow"
            )
        (found,) = [
            s
            for s in await self.schedules()
            if (s.workflow_id, s.trigger) == (workflow_id, trigger)
        ]
        return found

    async def count_executions(self, *, workflow: str | None = None) -> dict[ExecutionStatus, int]:
        """How many executions the store holds with each status (of one workflow, or
        of all); statuses no execution has are left out."""
        return await self._require_store().count_executions(workflow_id=workflow)

    async def explain(self, execution_id: str) -> Explanation:
        """Why the execution is where it is, in words: what it waits for (data with
        its token, a timer, a retry, a child) and until when, whether it is paused,
        which engine runs it and until when its lease holds, or that its engine is
        gone. Raises :class:`ExecutionNotFound` for an unknown id."""
        live = self._require_live()
        stored = await live.load(execution_id)
        supervisor = live.get(execution_id)
        here = supervisor.machine.snapshot() if supervisor is not None else None
        unable = None
        if here is None and stored.status not in FINAL_STATUSES:
            try:
                await self._catalog.graph_for(stored, self._require_store())
            except PranaError as exc:
                unable = " ".join(str(exc).split())  # one line
        return explain(
            stored,
            live=here,
            wall_clock=time.time(),
            heartbeat=self._heartbeat,
            unable_here=unable,
        )

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
        started_after: float | None = None,
        started_before: float | None = None,
        older_than: Execution | tuple[float, str] | None = None,
    ) -> list[Execution]:
        """Executions in the store, newest first, filtered (started at or after
        ``started_after``, before ``started_before``, seconds since the epoch);
        without their audit trails (use :meth:`get` for one). The next page: the
        executions ``older_than`` the last one of this page (or its start time and
        id)."""
        older = (
            (older_than.started_at or 0.0, older_than.id)
            if isinstance(older_than, Execution)
            else older_than
        )
        stored = await self._require_store().list_executions(
            status=status,
            workflow_id=workflow,
            limit=limit,
            started_after=started_after,
            started_before=started_before,
            older_than=older,
        )
        return [execution.to_execution() for execution in stored]

    def events(self, *, limit: int = DEFAULT_EVENT_BUFFER) -> Subscription:
        """Subscribe to the events of every execution of this engine from now on.

        Iteration ends when the engine stops.
        """
        subscription = Subscription(limit, on_close=self._engine_subscriptions.discard)
        self._engine_subscriptions.add(subscription)
        return subscription

    @property
    def live_count(self) -> int:
        """How many executions are in memory (running) now."""
        return len(self._live) if self._live is not None else 0

    def statistics(self) -> EngineStatistics:
        """What the engine has done so far (see :class:`EngineStatistics`)."""
        writer = self._writer
        return EngineStatistics(
            live_executions=self.live_count,
            commits=writer.batches if writer is not None else 0,
            checkpoints=writer.written if writer is not None else 0,
            node_runs=self._tally.node_runs,
            node_run_times=self._tally.node_run_times,
            commit_times=self._tally.commit_times,
        )

    def health(self) -> EngineHealth:
        """How the engine's background services are doing: each one's state
        (``running``, or ``retrying`` after failures) and last error. ``ok`` is false
        while any of them fails (a store locked by another process, a full disk):
        they go on trying, and the executions wait."""
        services = self._background.health()
        return EngineHealth(
            ok=all(service.state == "running" for service in services),
            live_executions=self.live_count,
            services=services,
            leader=self.leader,
            engines=() if self._last_beat is None else self._last_beat.alive,
        )

    async def wait_idle(self) -> None:
        """Wait until no execution runs in this engine and nothing is being handed to
        one (an ended child to its parent, say), and the queue has been looked at
        since an execution there could start; the CLI calls it before leaving."""
        if self._queue is not None and self._queue.pending:
            await self._queue.next_pass()
        await self._require_live().wait_idle()

    # ------------------------------------------------------------------ internals

    async def _start_new(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any,
        trigger: str | None,
        handed_over: anyio.Event | None = None,
        execution_id: str | None = None,
        priority: int | None = None,
    ) -> ExecutionSupervisor:
        """Check ``input`` against the trigger and launch a new execution (see
        :meth:`start`), under a turn."""
        if priority is not None and (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not -MAX_PRIORITY <= priority <= MAX_PRIORITY
        ):
            raise PranaError(
                f"priority must be a whole number from {-MAX_PRIORITY} to {MAX_PRIORITY}, "
                f"not {priority!r}"
            )
        live = self._require_live()
        async with live.turn() as turn:
            graph = self.compile(workflow, trigger=trigger)
            input = check_json(input, what="the input", limits=self.limits)
            input = trigger_input(graph, input, self.clock.now())
            self._catalog.register(graph.workflow)
            execution_id = execution_id or new_execution_id(self.clock.now())
            return await live.start(
                graph, input, execution_id, turn, handed_over=handed_over, priority=priority
            )

    async def _status(self, execution_id: str) -> ExecutionStatus:
        live = self._require_live()
        supervisor = live.get(execution_id)
        if supervisor is not None:
            return supervisor.machine.status
        return (await live.load(execution_id)).status

    async def _fire_timer(self, timer: Suspension | ScheduleSlot) -> None:
        await fire_timer(self._require_live(), self._schedules, timer)

    async def _followed(self, execution: Execution) -> Execution:
        """``execution``, or if it stopped where :meth:`run` does not, the execution
        at its next stop: queued, if an engine (this one, at its next claim) starts
        it; waiting only for ``sync`` children that are still moving."""
        live = self._require_live()
        while execution.status == "queued" and self._queue is not None:
            await self._queue.next_pass()
            supervisor = live.get(execution.id)
            if supervisor is not None:
                execution = await supervisor.wait_stop()
                continue
            stored = await live.load(execution.id)
            keyed = stored.queue is not None and stored.queue.key is not None
            if stored.status == "queued" and stored.owner is None and keyed:
                break  # its key has no room now
            execution = await live.wait_for(execution.id, lambda e: e.status != "queued")
        return await self._require_children().past_children(execution)

    def _require_live(self) -> LiveExecutions:
        if self._live is None:
            raise PranaError(NOT_RUNNING)
        return self._live

    def _require_children(self) -> ChildExecutions:
        if self._children is None:
            raise PranaError(NOT_RUNNING)
        return self._children

    def _require_store(self) -> Store:
        if self._store is None:
            raise PranaError(NOT_RUNNING)
        return self._store


def _internal_error(group: BaseExceptionGroup[Any]) -> InternalError | None:
    """The first :class:`InternalError` in ``group``, however deep."""
    for exc in group.exceptions:
        if isinstance(exc, InternalError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _internal_error(exc)
            if found is not None:
                return found
    return None


async def _stored_timers(
    store: Store, after: tuple[float, str, int] | None, limit: int
) -> list[Suspension]:
    return await store.timers(after=after, limit=limit)
