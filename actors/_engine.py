"""The engine: the object an application holds (DESIGN §7, §10).

``async with Engine(...) as engine`` opens the store (refusing to start if it is not
safe to use), then one task group with the checkpoint writer, the timer actor, the
lease heartbeat and a supervisor task per live execution (``run`` and ``resume``
drive theirs in the caller's task while they can). At start-up it arms the
timers kept in the store and takes over executions whose engine died. Leaving the
block stops it: running executions stop at their last checkpoint and are released,
so any engine on the same store carries them on.

The module runs past 600 lines because the class is the application's whole API:
each public method is short and hands the work to the module that owns it
(``_control``, ``_children``, ``_timers``, ``_ownership``, ``_catalog``); splitting
the class would scatter the API, not the work.
"""

from __future__ import annotations

import builtins
import logging
import os
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import orjson
from anyio import AsyncContextManagerMixin
from anyio.abc import TaskGroup

from prana._commands import Command
from prana._compiler import ExecutionGraph
from prana._errors import ExecutionNotFound, InvalidTransition, PranaError
from prana._loading import WorkflowSource
from prana._machine import ExecutionMachine
from prana._model import Workflow
from prana._records import DEADLINE_INDEX, Execution, ExecutionStatus, StoredExecution, Suspension
from prana._registry import ActionRegistry
from prana._subworkflows import DEFAULT_MAX_DEPTH
from prana._triggers import trigger_input
from prana.storage import MemoryStore, Store, open_store
from prana.storage._sqlite import Synchronous

from ._catalog import Catalog
from ._children import Family, past_children, reconcile, tell_parent_quietly
from ._clock import Clock, SystemClock, new_execution_id
from ._control import control, pick_up_requests
from ._handle import DEFAULT_EVENT_BUFFER
from ._handle import ExecutionHandle as ExecutionHandle
from ._ownership import dead_owners, heartbeat, new_owner_id, recover_orphans
from ._schedules import Schedules, ScheduleSlot
from ._subscription import Middleware, Publisher, Subscription
from ._supervision import Lost, ResumeRequest, Services, WakeRequest
from ._supervisor import ExecutionSupervisor
from ._timers import TimerActor, fire_timer
from ._writer import CheckpointWriter

logger = logging.getLogger("prana.engine")

# How often (seconds) engine.wait reads the store again for a waiting execution.
_WATCH_POLL = 1.0
Durability = Literal["off", "normal", "full"]


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
    ``{}`` to hide it). ``middleware`` are callables that receive every event; they
    must not block. ``clock`` is the workflows' clock (a
    :class:`prana.testing.VirtualClock` in tests). ``lease`` is how long, in
    seconds, an engine that stops answering keeps its executions before another
    takes them; ``heartbeat`` how often it renews its leases and looks for abandoned
    executions (default: a third of ``lease``). ``recover=False`` leaves other
    engines' abandoned executions alone. ``workflows`` are served as by
    :meth:`register`; ``schedules=False`` does not run their schedule triggers.
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
        lease: float = 30.0,
        heartbeat: float | None = None,
        recover: bool = True,
        workflows: Iterable[Workflow | WorkflowSource] = (),
        max_depth: int = DEFAULT_MAX_DEPTH,
        schedules: bool = True,
    ) -> None:
        if durability not in (None, "off", "normal", "full"):
            raise ValueError(f"durability must be 'off', 'normal' or 'full', not {durability!r}")
        self.actions = actions if actions is not None else ActionRegistry()
        self.owner = new_owner_id()
        self._store_option = store
        self._durability = durability
        self._env: Mapping[str, str] = dict(os.environ) if env is None else dict(env)
        self._middleware = tuple(middleware)
        self.clock: Clock = clock or SystemClock()
        self._lease = lease
        self._heartbeat_interval = heartbeat if heartbeat is not None else lease / 3
        self._recover = recover
        self.max_depth = max_depth
        self._catalog = Catalog(self.actions)
        self._family = Family(self)
        self._schedules = Schedules(self) if schedules else None
        self._idle: anyio.Event | None = None
        self._unrunnable: set[str] = set()
        self._live: dict[str, ExecutionSupervisor] = {}
        self._watchers: dict[str, anyio.Event] = {}
        self._engine_subscriptions: set[Subscription] = set()
        self._task_group: TaskGroup | None = None
        self._store: Store | None = None
        self._services: Services | None = None
        for workflow in workflows:
            self.register(workflow)

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Engine]:
        synchronous: Synchronous | None = "FULL" if self._durability == "full" else None
        store = open_store(self._store_option, synchronous=synchronous)
        durability = self._durability or ("off" if isinstance(store, MemoryStore) else "normal")
        await store.open()
        self._store = store
        writer = CheckpointWriter(
            store,
            owner=self.owner,
            lease=self._lease,
            now=self.clock.now,
            alone=lambda: len(self._live) <= 1,
        )
        timers = TimerActor(self.clock, self._fire_timer)
        self._services = Services(
            clock=self.clock,
            writer=writer,
            timers=timers,
            durable=durability != "off",
            parent=self._family,
        )
        body_error: BaseException | None = None
        try:
            async with anyio.create_task_group() as task_group:
                await task_group.start(writer.run)
                await task_group.start(timers.run)
                task_group.start_soon(store.maintain)
                self._task_group = task_group
                for suspension in await store.timers():
                    timers.add(suspension)
                if self._recover:
                    await recover_orphans(self, dead_owners(await store.owners()))
                if self._recover:
                    await reconcile(self)
                if self._schedules is not None:
                    for served in list(self._catalog.served.values()):
                        await self._schedules.arm(served)
                task_group.start_soon(heartbeat, self, self._heartbeat_interval)
                task_group.start_soon(pick_up_requests, self)
                try:
                    yield self
                except BaseException as exc:  # re-raised below, unwrapped from the group
                    body_error = exc
                finally:
                    self._task_group = None
                    task_group.cancel_scope.cancel()
        finally:
            for subscription in list(self._engine_subscriptions):
                subscription.close()
            with anyio.move_on_after(10, shield=True):
                await self._release_all()
                await store.aclose()
            self._store = None
        if body_error is not None:
            raise body_error

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
        triggers answer :meth:`start_webhook`, and its schedule triggers run while the
        engine is open (unless ``Engine(schedules=False)``). The highest version
        registered of an id is the one served.

        Raises :class:`WorkflowValidationError` if it is invalid, and
        :class:`TriggerError` if another workflow answers one of its webhooks.
        """
        workflow, served = self._catalog.serve(workflow)
        if served and self._schedules is not None and self._task_group is not None:
            self._task_group.start_soon(self._schedules.arm_quietly, workflow)
        return workflow

    async def start_webhook(
        self,
        path: str,
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> ExecutionHandle:
        """Start the registered workflow whose ``webhook.trigger`` answers ``method``
        and ``path``, with the request as ``trigger`` (``trigger.body``,
        ``trigger.headers`` with lower-case names, ``trigger.query``). Raises
        :class:`TriggerError` if no registered workflow answers the request."""
        workflow, trigger = self._catalog.webhook(method, path)
        request = {"method": method, "path": path, "headers": headers, "query": query}
        return await self.start(workflow, {**request, "body": body}, trigger=trigger)

    async def start(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any = None,
        *,
        trigger: str | None = None,
    ) -> ExecutionHandle:
        """Start an execution in the background and return its handle, once the
        execution is saved (before its first node runs): an engine that crashes after
        ``start`` returned finds it when it starts again.

        The workflow's definition is stored (once per version). Raises
        :class:`WorkflowValidationError` before anything starts if the workflow is
        invalid, :class:`TriggerError` if ``input`` does not fit the trigger,
        :class:`PranaError` if the engine is not open, ``input`` is not JSON data, or
        the execution could not be saved.
        """
        handed_over = anyio.Event()
        try:
            supervisor = await self._begin_new(workflow, input, trigger, handed_over)
            await supervisor.wait_saved()
        finally:
            handed_over.set()  # the execution carries on (or stops) without us
        return ExecutionHandle(supervisor)

    async def run(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any = None,
        *,
        trigger: str | None = None,
    ) -> Execution:
        """Run a workflow until it ends or waits, and return the execution.

        A failed execution is returned, not raised: look at ``status`` and ``error``.
        An execution that waits (``status == "suspended"``) carries on when resumed
        or woken. Waiting only for ``sync`` child executions does not count: ``run``
        follows the execution until its children end. Raises
        :class:`WorkflowValidationError` if the workflow is invalid.

        Cancelling ``run`` only stops the waiting: the execution carries on in the
        engine, as one begun with :meth:`start` does (start it that way to keep a
        handle on it).
        """
        # No handle goes out, so nothing to hand over.
        supervisor = await self._begin_new(workflow, input, trigger, here=True)
        return await self._past_children(
            await self._drive_here(supervisor, supervisor.machine.start)
        )

    async def resume(
        self, execution_id: str, data: Any = None, *, node: str | None = None
    ) -> Execution:
        """Resume a waiting node with ``data`` and return the execution when it next
        waits or ends.

        ``node`` names the waiting node when there are several. A paused execution
        resumed without data or node is unpaused (:meth:`unpause`); with them, its
        node gets the data and it stays paused. Raises :class:`ExecutionNotFound` for
        an unknown id and :class:`InvalidTransition` when the execution is not waiting
        there; either way nothing changes. Cancelling ``resume`` leaves the execution
        as it was, or, once the execution is taking the data, only stops the
        waiting: it carries on in the engine, as with :meth:`run`.
        """
        data = _json(data, "resume data")
        supervisor = self._live.get(execution_id)
        if supervisor is not None:
            stopped = supervisor.stop_waiter()  # before asking: it may end at once
            request = ResumeRequest(node_key=node, data=data)
            supervisor.deliver(request)
            await request.done.wait()
            if request.error is not None:
                raise request.error
            return await self._past_children(await supervisor.wait_stop(stopped))
        stored = await self._load(execution_id)
        if stored.status == "paused" and data is None and node is None:
            return await self.unpause(execution_id)
        self._check_waiting(stored)
        machine = await self._restore(stored)
        commands = machine.resume(node, data, self.clock.now())
        return await self._past_children(await self._take_over(machine, commands))

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
        same store (which applies it within about a second). Raises
        :class:`InvalidTransition` (changing nothing) if it has ended, and
        :class:`ExecutionNotFound` for an unknown id.
        """
        return await control(self, execution_id, "cancel", reason)

    async def pause(self, execution_id: str) -> Execution:
        """Pause a running or waiting execution and return it once ``paused``.

        Nothing new is dispatched; nodes already running finish and their results
        are kept. A paused execution is saved and leaves memory; waiting nodes may
        still be resumed, and timers that come due fire when it is unpaused. Works
        wherever the execution is, like :meth:`cancel`. Raises
        :class:`InvalidTransition` if it is not running or waiting.
        """
        return await control(self, execution_id, "pause")

    async def unpause(self, execution_id: str) -> Execution:
        """Carry a paused execution on; return it when it next waits or ends.

        Raises :class:`InvalidTransition` if it is not paused.
        """
        return await control(self, execution_id, "unpause")

    async def retry(self, execution_id: str) -> Execution:
        """Run a failed execution again from its failed node (a new attempt, same
        idempotency key); completed nodes are kept. Returns it when it next waits or
        ends. Raises :class:`InvalidTransition` if it has not failed.
        """
        return await control(self, execution_id, "retry")

    async def wait(self, execution_id: str) -> Execution:
        """Wait until the execution ends (completed, failed, ...) and return it.

        It follows the execution wherever it runs: in memory here, or waiting in the
        store until a timer or a resume carries it on (in this engine or another on
        the same store). An execution waiting for a webhook ends only once resumed:
        bound the wait with ``anyio.fail_after`` where that may never happen.
        Raises :class:`ExecutionNotFound` for an unknown id.
        """
        return await self._wait_for(execution_id, lambda execution: execution.finished)

    async def _wait_for(self, execution_id: str, done: Callable[[Execution], bool]) -> Execution:
        while True:
            supervisor = self._live.get(execution_id)
            if supervisor is not None:
                try:
                    execution = await supervisor.wait_stop()
                except Lost:
                    continue  # another task or engine carries it on: follow that
                if done(execution):
                    return execution
                continue
            changed = self._watchers.setdefault(execution_id, anyio.Event())
            stored = await self._load(execution_id)
            if stored.status != "running":
                execution = stored.to_execution()
                if done(execution):
                    return execution
            if execution_id in self._live:
                continue
            # Woken when a supervisor for it starts or exits here; the store is read
            # again now and then in case another engine carried it on.
            with anyio.move_on_after(_WATCH_POLL):
                await changed.wait()

    async def _past_children(self, execution: Execution) -> Execution:
        return await past_children(self, execution)

    # ------------------------------------------------------------------ reading

    async def get(self, execution_id: str) -> Execution:
        """The execution with this id, with its audit trail: live, or from the store.

        Raises :class:`ExecutionNotFound` if there is none.
        """
        supervisor = self._live.get(execution_id)
        if supervisor is not None:
            return supervisor.machine.snapshot()
        return (await self._load(execution_id)).to_execution()

    async def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        """Executions in the store, newest first, filtered; without their audit trails
        (use :meth:`get` for one)."""
        stored = await self._require_store().list_executions(
            status=status, workflow_id=workflow, limit=limit
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
        return len(self._live)

    # ------------------------------------------------------------------ internals

    def _launch(
        self,
        machine: ExecutionMachine,
        first: Callable[[float], builtins.list[Command]] | None,
        handed_over: anyio.Event | None = None,
    ) -> ExecutionSupervisor:
        """A supervisor for ``machine``, running from ``first`` in a task of the
        engine's; without ``first``, not running yet (see ``run_here``)."""
        task_group = self._require_open()
        assert self._services is not None
        publisher = Publisher(self._middleware, self._engine_subscriptions)
        supervisor = ExecutionSupervisor(machine, publisher, self._services, self._exited)
        self._live[machine.execution_id] = supervisor
        self._notify_watchers(machine.execution_id)
        if first is not None:
            task_group.start_soon(
                supervisor.run, first, handed_over, name=f"prana execution {machine.execution_id}"
            )
        return supervisor

    async def _drive_here(
        self, supervisor: ExecutionSupervisor, first: Callable[[float], builtins.list[Command]]
    ) -> Execution:
        """Drive ``supervisor`` from ``first`` in this task for as long as it can (see
        ``run_here``), then follow it to its next stop (``wait_stop``, which raises if
        the supervisor stopped short of one)."""
        await supervisor.run_here(first, self._carry_on)
        return await supervisor.wait_stop()

    def _carry_on(self, supervisor: ExecutionSupervisor, *args: Any) -> bool:
        """Start a task that carries on ``supervisor``'s execution where ``run_here``
        handed it off; ``False`` if the engine has stopped."""
        if self._task_group is None:
            return False
        self._task_group.start_soon(
            supervisor.carry_on, *args, name=f"prana execution {supervisor.execution_id}"
        )
        return True

    def _exited(self, supervisor: ExecutionSupervisor) -> None:
        if self._live.get(supervisor.execution_id) is supervisor:
            del self._live[supervisor.execution_id]
        self._notify_watchers(supervisor.execution_id)
        self._check_idle()
        if self._task_group is None:
            return
        for message in supervisor.leftovers:  # came as it left memory: hand them on
            if isinstance(message, WakeRequest):
                for timer in self._timer_entries(supervisor, message.execution_index):
                    self._task_group.start_soon(self._fire_timer, timer)
            else:
                self._task_group.start_soon(
                    tell_parent_quietly, self, supervisor.execution_id, message
                )

    def _notify_watchers(self, execution_id: str) -> None:
        changed = self._watchers.pop(execution_id, None)
        if changed is not None:
            changed.set()

    async def _take_over(
        self, machine: ExecutionMachine, commands: builtins.list[Command]
    ) -> Execution:
        """Take a waiting execution from the store and run it from ``commands``.

        The taking is part of its first checkpoint (so it shares a commit with
        others): nothing runs before it is saved, and if another engine took the
        execution first, the caller learns it then. It runs in the caller's task
        while it can, as :meth:`run`'s does.
        """
        machine.take_on_save = True
        supervisor = self._launch(machine, None)
        try:
            return await self._drive_here(supervisor, lambda now: commands)
        except Lost as exc:
            raise InvalidTransition(
                f"execution {machine.execution_id} was resumed or taken by another engine just now"
            ) from exc

    async def _load(self, execution_id: str) -> StoredExecution:
        stored = await self._require_store().load_execution(execution_id)
        if stored is None:
            raise ExecutionNotFound(
                f"no execution has id {execution_id!r}; list them with 'prana list'"
            )
        return stored

    def _check_waiting(self, stored: StoredExecution) -> None:
        if stored.status in ("suspended", "paused"):
            return
        if stored.status == "running":
            raise InvalidTransition(
                f"execution {stored.id} is running in another engine ({stored.owner}); "
                "resume it there, or once it waits"
            )
        raise InvalidTransition(
            f"execution {stored.id} is {stored.status}; only a waiting (suspended) execution can be resumed"
        )

    async def _restore(self, stored: StoredExecution) -> ExecutionMachine:
        graph = await self._catalog.graph_for(stored, self._require_store())
        return ExecutionMachine.restored(graph, stored, env=self._env)

    async def wait_idle(self) -> None:
        """Wait until no execution runs in this engine and no ended child is being
        reported to its parent (the CLI calls it before leaving)."""
        while self._live or self._family.telling:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    def _check_idle(self) -> None:
        if self._idle is not None and not self._live and not self._family.telling:
            self._idle.set()
            self._idle = None

    async def _begin_new(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any,
        trigger: str | None,
        handed_over: anyio.Event | None = None,
        *,
        here: bool = False,
    ) -> ExecutionSupervisor:
        """Check ``input`` against the trigger and launch a new execution (see
        :meth:`start`); with ``here``, leave it to the caller to run."""
        self._require_store()
        graph = self.compile(workflow, trigger=trigger)
        input = trigger_input(graph, _json(input, "the input"), self.clock.now())
        self._catalog.register(graph.workflow)
        execution_id = new_execution_id(self.clock.now())
        return await self._begin(graph, input, execution_id, handed_over=handed_over, here=here)

    async def _begin(
        self,
        graph: ExecutionGraph,
        input: Any,
        execution_id: str,
        handed_over: anyio.Event | None = None,
        here: bool = False,
        **fields: Any,
    ) -> ExecutionSupervisor:
        """Store ``graph``'s definition (once) and launch a new execution of it (with
        ``here``, leave it to the caller to run); ``fields`` go to its
        :class:`ExecutionMachine` (a child's parent, say). See
        :meth:`ExecutionSupervisor.run` for ``handed_over``."""
        await self._catalog.save(graph, self._require_store(), self.clock.now())
        machine = ExecutionMachine(
            graph, execution_id=execution_id, input=input, env=self._env, **fields
        )
        return self._launch(machine, None if here else machine.start, handed_over)

    async def _fire_timer(self, timer: Suspension | ScheduleSlot) -> None:
        await fire_timer(self, timer)

    def _timer_entries(
        self, supervisor: ExecutionSupervisor, execution_index: int
    ) -> builtins.list[Suspension]:
        machine = supervisor.machine
        if execution_index == DEADLINE_INDEX and machine.deadline is not None:
            return [Suspension.deadline(machine.execution_id, machine.deadline)]
        return [s for s in machine.suspensions if s.execution_index == execution_index]

    async def _release_all(self) -> None:
        if self._store is not None and self._live:
            try:
                await self._store.renew(list(self._live), owner=self.owner, lease_expires=0.0)
            except PranaError:
                logger.warning(
                    "could not release executions; their leases expire in %s s", self._lease
                )

    def _require_open(self) -> TaskGroup:
        if self._task_group is None:
            raise PranaError(_NOT_RUNNING)
        return self._task_group

    def _require_store(self) -> Store:
        if self._store is None:
            raise PranaError(_NOT_RUNNING)
        return self._store


_NOT_RUNNING = "the engine is not running; use it inside 'async with Engine(...) as engine:'"


def _json(value: Any, what: str) -> Any:
    """A private copy of ``value``, which must be JSON data."""
    if value is None or type(value) in (str, int, bool):
        return value
    try:
        return orjson.loads(orjson.dumps(value))
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise PranaError(f"{what} must be JSON data: {exc}") from None
