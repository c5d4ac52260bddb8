"""The engine: the object an application holds (DESIGN §7, §10).

``async with Engine(...) as engine`` opens the store (refusing to start if it is not
safe to use), then one task group with the checkpoint writer, the timer actor, the
lease heartbeat and a supervisor task per live execution. At start-up it arms the
timers kept in the store and takes over executions whose engine died. Leaving the
block stops it: running executions stop at their last checkpoint and are released,
so any engine on the same store carries them on.
"""

from __future__ import annotations

import builtins
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import orjson
from anyio import AsyncContextManagerMixin
from anyio.abc import TaskGroup

from prana._commands import Command
from prana._compiler import ExecutionGraph, compile_workflow
from prana._errors import ExecutionNotFound, InvalidTransition, PranaError
from prana._loading import WorkflowSource, load_workflow, workflow_to_dict
from prana._machine import ExecutionMachine
from prana._model import Workflow
from prana._records import FINAL_STATUSES, Execution, ExecutionStatus, Suspension
from prana._registry import ActionRegistry
from prana.storage import MemoryStore, Store, StoredExecution, StoredWorkflow, open_store
from prana.storage._sqlite import Synchronous

from ._clock import Clock, SystemClock, new_execution_id
from ._ownership import dead_owners, new_owner_id
from ._subscription import Middleware, Publisher, Subscription
from ._supervisor import ExecutionSupervisor, Lost, ResumeRequest, Services, WakeRequest
from ._timers import TimerActor
from ._writer import CheckpointWriter

logger = logging.getLogger("prana.engine")

DEFAULT_EVENT_BUFFER = 1000
# How often (seconds) engine.wait reads the store again for a waiting execution.
_WATCH_POLL = 1.0
Durability = Literal["off", "normal", "full"]


class ExecutionHandle:
    """A started execution: its id, its events, and a way to wait for it to stop."""

    def __init__(self, supervisor: ExecutionSupervisor) -> None:
        self._supervisor = supervisor

    @property
    def id(self) -> str:
        """The execution id."""
        return self._supervisor.execution_id

    @property
    def status(self) -> ExecutionStatus:
        """The status now."""
        return self._supervisor.machine.status

    def snapshot(self) -> Execution:
        """The execution as it is now, audit trail included."""
        return self._supervisor.machine.snapshot()

    def events(self, *, limit: int = DEFAULT_EVENT_BUFFER) -> Subscription:
        """Subscribe to this execution's events from now on; iteration ends when the
        execution waits or ends.

        Call it before the first ``await`` after :meth:`Engine.start` to see every
        event from ``ExecutionStarted`` on. At most ``limit`` unread events are kept;
        a reader that falls further behind gets an ``EventsDropped`` event.
        """
        publisher = self._supervisor.publisher
        subscription = Subscription(limit, on_close=publisher.subscriptions.discard)
        if self._supervisor.last_stop is not None or self._supervisor.failure is not None:
            subscription.close()
        else:
            publisher.subscriptions.add(subscription)
        return subscription

    async def result(self) -> Execution:
        """Wait until the execution waits (``suspended``) or ends, and return it.

        Raises :class:`PranaError` if the engine stopped first (the execution carries
        on when an engine next starts on the same store). Cancelling the wait does not
        cancel the execution.
        """
        supervisor = self._supervisor
        if supervisor.last_stop is not None:
            return supervisor.last_stop
        if supervisor.failure is not None:
            raise supervisor.failure
        return await supervisor.wait_stop()


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
    engines' abandoned executions alone.
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
        self._graphs: dict[tuple[str, int, str | None], tuple[Workflow, ExecutionGraph]] = {}
        self._graphs_by_hash: dict[tuple[str, str], ExecutionGraph] = {}
        self._saved_hashes: set[str] = set()
        self._definitions: dict[str, StoredWorkflow] = {}
        self._loading: dict[str, anyio.Event] = {}
        self._unrunnable: set[str] = set()
        self._live: dict[str, ExecutionSupervisor] = {}
        self._watchers: dict[str, anyio.Event] = {}
        self._engine_subscriptions: set[Subscription] = set()
        self._task_group: TaskGroup | None = None
        self._store: Store | None = None
        self._services: Services | None = None

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Engine]:
        synchronous: Synchronous | None = "FULL" if self._durability == "full" else None
        store = open_store(self._store_option, synchronous=synchronous)
        durability = self._durability or ("off" if isinstance(store, MemoryStore) else "normal")
        await store.open()
        self._store = store
        writer = CheckpointWriter(store, owner=self.owner, lease=self._lease, now=self.clock.now)
        timers = TimerActor(self.clock, self._fire_timer)
        self._services = Services(
            clock=self.clock,
            writer=writer,
            timers=timers,
            durable=durability != "off",
        )
        body_error: BaseException | None = None
        try:
            async with anyio.create_task_group() as task_group:
                await task_group.start(writer.run)
                await task_group.start(timers.run)
                self._task_group = task_group
                for suspension in await store.timers():
                    timers.add(suspension)
                if self._recover:
                    await self._recover_orphans(dead_owners(await store.owners()))
                task_group.start_soon(self._heartbeat)
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
        if not isinstance(workflow, Workflow):
            workflow = load_workflow(workflow, actions=self.actions)
        key = (workflow.id, workflow.version, trigger)
        cached = self._graphs.get(key)
        if cached is not None and (cached[0] is workflow or cached[0] == workflow):
            return cached[1]
        graph = compile_workflow(workflow, self.actions, trigger=trigger)
        self._graphs[key] = (workflow, graph)
        self._graphs_by_hash[(graph.hash, graph.trigger)] = graph
        return graph

    async def start(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any = None,
        *,
        trigger: str | None = None,
    ) -> ExecutionHandle:
        """Start an execution in the background and return its handle.

        The workflow's definition is stored (once per version), and the execution is
        saved before its first node runs. Raises :class:`WorkflowValidationError`
        before anything starts if the workflow is invalid, :class:`PranaError` if the
        engine is not open or ``input`` is not JSON data.
        """
        store = self._require_store()
        graph = self.compile(workflow, trigger=trigger)
        input = _json(input, "the input")
        if graph.hash not in self._saved_hashes:
            await store.save_workflow(
                StoredWorkflow(
                    hash=graph.hash,
                    id=graph.workflow.id,
                    version=graph.workflow.version,
                    definition=workflow_to_dict(graph.workflow),
                    created_at=self.clock.now(),
                )
            )
            self._saved_hashes.add(graph.hash)
        machine = ExecutionMachine(
            graph, execution_id=new_execution_id(self.clock.now()), input=input, env=self._env
        )
        return ExecutionHandle(self._launch(machine, machine.start))

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
        or woken. Raises :class:`WorkflowValidationError` if the workflow is invalid.
        """
        handle = await self.start(workflow, input, trigger=trigger)
        return await handle.result()

    async def resume(
        self, execution_id: str, data: Any = None, *, node: str | None = None
    ) -> Execution:
        """Resume a waiting node with ``data`` and return the execution when it next
        waits or ends.

        ``node`` names the waiting node when there are several. Raises
        :class:`ExecutionNotFound` for an unknown id and :class:`InvalidTransition`
        when the execution is not waiting there; either way nothing changes.
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
            return await supervisor.wait_stop(stopped)
        stored = await self._load(execution_id)
        self._check_waiting(stored)
        machine = await self._restore(stored)
        commands = machine.resume(node, data, self.clock.now())
        return await self._take_over(machine, commands)

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

    async def wait(self, execution_id: str) -> Execution:
        """Wait until the execution ends (completed, failed, ...) and return it.

        It follows the execution wherever it runs: in memory here, or waiting in the
        store until a timer or a resume carries it on (in this engine or another on
        the same store). An execution waiting for a webhook ends only once resumed:
        bound the wait with ``anyio.fail_after`` where that may never happen.
        Raises :class:`ExecutionNotFound` for an unknown id.
        """
        while True:
            supervisor = self._live.get(execution_id)
            if supervisor is not None:
                execution = await supervisor.wait_stop()
                if execution.finished:
                    return execution
                continue
            changed = self._watchers.setdefault(execution_id, anyio.Event())
            stored = await self._load(execution_id)
            if stored.status in FINAL_STATUSES:
                return stored.to_execution()
            if execution_id in self._live:
                continue
            # Woken when a supervisor for it starts or exits here; the store is read
            # again now and then in case another engine carried it on.
            with anyio.move_on_after(_WATCH_POLL):
                await changed.wait()

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
        self, machine: ExecutionMachine, first: Callable[[float], builtins.list[Command]]
    ) -> ExecutionSupervisor:
        task_group = self._require_open()
        assert self._services is not None
        publisher = Publisher(self._middleware, self._engine_subscriptions)
        supervisor = ExecutionSupervisor(machine, publisher, self._services, self._exited)
        self._live[machine.execution_id] = supervisor
        self._notify_watchers(machine.execution_id)
        task_group.start_soon(supervisor.run, first, name=f"prana execution {machine.execution_id}")
        return supervisor

    def _exited(self, supervisor: ExecutionSupervisor) -> None:
        if self._live.get(supervisor.execution_id) is supervisor:
            del self._live[supervisor.execution_id]
        self._notify_watchers(supervisor.execution_id)

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
        execution first, the caller learns it then.
        """
        machine.take_on_save = True
        supervisor = self._launch(machine, lambda now: commands)
        try:
            return await supervisor.wait_stop(supervisor.stop_waiter())
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
        if stored.status == "suspended":
            return
        if stored.status == "running":
            raise InvalidTransition(
                f"execution {stored.id} is running in another engine ({stored.owner}); "
                "resume it there, or once it waits"
            )
        raise InvalidTransition(
            f"execution {stored.id} is {stored.status}; only a waiting (suspended) execution can be resumed"
        )

    async def _graph_for(self, stored: StoredExecution) -> ExecutionGraph:
        key = (stored.workflow_hash, stored.trigger)
        graph = self._graphs_by_hash.get(key)
        if graph is not None:
            return graph
        definition = await self._definition(stored.workflow_hash)
        graph = self._graphs_by_hash.get(key)
        if graph is not None:  # compiled meanwhile, by a task that waited alongside
            return graph
        if definition is None:
            raise PranaError(
                f"the workflow of execution {stored.id} ({stored.workflow_id} v{stored.workflow_version}) "
                "is missing from the store"
            )
        workflow = load_workflow(definition.definition, actions=self.actions)
        graph = compile_workflow(workflow, self.actions, trigger=stored.trigger)
        if graph.hash != stored.workflow_hash:
            raise PranaError(
                f"the stored definition of {stored.workflow_id} v{stored.workflow_version} does not "
                f"compile to the version execution {stored.id} started on"
            )
        self._graphs_by_hash[key] = graph
        self._saved_hashes.add(graph.hash)
        return graph

    async def _definition(self, workflow_hash: str) -> StoredWorkflow | None:
        """A stored definition, loaded once however many tasks ask at the same time."""
        loading = self._loading.get(workflow_hash)
        if loading is not None:
            await loading.wait()
            return self._definitions.get(workflow_hash)
        loading = self._loading[workflow_hash] = anyio.Event()
        try:
            definition = await self._require_store().load_workflow(workflow_hash)
            if definition is not None:
                self._definitions[workflow_hash] = definition
            return definition
        finally:
            del self._loading[workflow_hash]
            loading.set()

    async def _restore(self, stored: StoredExecution) -> ExecutionMachine:
        return ExecutionMachine.restored(await self._graph_for(stored), stored, env=self._env)

    async def _fire_timer(self, suspension: Suspension) -> None:
        """A deadline passed: wake the node, here or by taking its execution."""
        execution_id = suspension.execution_id
        supervisor = self._live.get(execution_id)
        if supervisor is not None:
            supervisor.deliver(WakeRequest(execution_index=suspension.execution_index))
            return
        stored = await self._require_store().load_execution(execution_id)
        if stored is None or stored.status != "suspended":
            return  # gone, ended, or running elsewhere (where its timers are)
        machine = await self._restore(stored)
        commands = machine.wake(suspension.execution_index, self.clock.now())
        if not commands and machine.status == "suspended":
            return  # resumed already, or not due after all
        if self._task_group is not None:
            machine.take_on_save = True  # unless another engine took it meanwhile
            self._launch(machine, lambda now: commands)

    async def _recover_orphans(self, dead: Iterable[str] = ()) -> None:
        """Take over running executions whose engine died, and carry them on."""
        store = self._require_store()
        taken = await store.claim_orphans(
            owner=self.owner,
            lease_expires=time.time() + self._lease,
            now=time.time(),
            dead_owners=dead,
        )
        for execution_id in taken:
            if execution_id in self._live or execution_id in self._unrunnable:
                continue
            try:
                stored = await self._load(execution_id)
                machine = await self._restore(stored)
            except PranaError as exc:
                self._unrunnable.add(execution_id)
                logger.error("cannot carry on execution %s here: %s", execution_id, exc)
                await store.renew([execution_id], owner=self.owner, lease_expires=0.0)
                continue
            logger.info("carrying on execution %s from its last checkpoint", execution_id)
            self._launch(machine, machine.recover)

    async def _heartbeat(self) -> None:
        """Renew the leases of live executions; take over those of dead engines."""
        store = self._require_store()
        while True:
            await anyio.sleep(self._heartbeat_interval)
            await store.renew(
                list(self._live), owner=self.owner, lease_expires=time.time() + self._lease
            )
            if self._recover:
                await self._recover_orphans()

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
            raise PranaError(
                "the engine is not running; use it inside 'async with Engine(...) as engine:'"
            )
        return self._task_group

    def _require_store(self) -> Store:
        if self._store is None:
            raise PranaError(
                "the engine is not running; use it inside 'async with Engine(...) as engine:'"
            )
        return self._store


def _json(value: Any, what: str) -> Any:
    """A private copy of ``value``, which must be JSON data."""
    if value is None or type(value) in (str, int, bool):
        return value
    try:
        return orjson.loads(orjson.dumps(value))
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise PranaError(f"{what} must be JSON data: {exc}") from None
