"""The engine: the object an application holds (DESIGN §7, §10).

``async with Engine(...) as engine`` opens one task group that holds a supervisor
task per live execution. Leaving the block stops the engine: running executions
are cancelled, and their handles report that they did not finish.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio import AsyncContextManagerMixin
from anyio.abc import TaskGroup

from prana._compiler import ExecutionGraph, compile_workflow
from prana._errors import ExecutionNotFound, PranaError
from prana._loading import WorkflowSource, load_workflow
from prana._machine import ExecutionMachine
from prana._model import Workflow
from prana._records import Execution, ExecutionStatus
from prana._registry import ActionRegistry
from prana.storage import MemoryStore, Store

from ._clock import Clock, SystemClock, new_execution_id
from ._subscription import Middleware, Publisher, Subscription
from ._supervisor import ExecutionSupervisor

DEFAULT_EVENT_BUFFER = 1000


class ExecutionHandle:
    """A running execution: its id, its events, and a way to wait for its end."""

    def __init__(self, supervisor: ExecutionSupervisor) -> None:
        self._supervisor = supervisor
        self._done = anyio.Event()
        self._final: Execution | None = None

    @property
    def id(self) -> str:
        """The execution id."""
        return self._supervisor.execution_id

    @property
    def status(self) -> ExecutionStatus:
        """The status now (``running`` until it ends)."""
        return self._final.status if self._final is not None else self._supervisor.machine.status

    def snapshot(self) -> Execution:
        """The execution as it is now, audit trail included."""
        return self._final if self._final is not None else self._supervisor.machine.snapshot()

    def events(self, *, limit: int = DEFAULT_EVENT_BUFFER) -> Subscription:
        """Subscribe to this execution's events from now on; iteration ends with it.

        Call it before the first ``await`` after :meth:`Engine.start` to see every
        event from ``ExecutionStarted`` on. At most ``limit`` unread events are kept;
        a reader that falls further behind gets an ``EventsDropped`` event.
        """
        publisher = self._supervisor.publisher
        subscription = Subscription(limit, on_close=publisher.subscriptions.discard)
        if self._final is not None:
            subscription.close()
        else:
            publisher.subscriptions.add(subscription)
        return subscription

    async def result(self) -> Execution:
        """Wait for the execution to end and return it.

        Raises :class:`PranaError` if the engine stopped first. Cancelling the wait
        does not cancel the execution.
        """
        await self._done.wait()
        assert self._final is not None
        if not self._final.finished:
            raise PranaError(
                f"the engine stopped before execution {self.id} finished "
                f"(it was {self._final.status})"
            )
        return self._final

    def _finished(self, execution: Execution) -> None:
        self._final = execution
        self._done.set()


class Engine(AsyncContextManagerMixin):
    """Runs workflows. Use it as ``async with Engine(...) as engine:``.

    ``actions`` is the registry of actions workflows may use (by default every
    built-in action). ``store`` keeps executions: ``None`` or ``"memory://"`` for
    memory, or a :class:`prana.storage.Store`. ``env`` is what templates see as
    ``env`` (default: this process's environment variables; pass ``{}`` to hide them).
    ``middleware`` are callables that receive every event synchronously; they must
    not block. ``clock`` supplies wall-clock time.
    """

    def __init__(
        self,
        *,
        actions: ActionRegistry | None = None,
        store: Store | str | None = None,
        env: Mapping[str, str] | None = None,
        middleware: Iterable[Middleware] = (),
        clock: Clock | None = None,
    ) -> None:
        self.actions = actions if actions is not None else ActionRegistry()
        self._store_option = store
        self._env: Mapping[str, str] = dict(os.environ) if env is None else dict(env)
        self._middleware = tuple(middleware)
        self._clock = clock or SystemClock()
        self._graphs: dict[tuple[str, int, str | None], tuple[Workflow, ExecutionGraph]] = {}
        self._live: dict[str, ExecutionHandle] = {}
        self._engine_subscriptions: set[Subscription] = set()
        self._task_group: TaskGroup | None = None
        self._store: Store | None = None

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Engine]:
        self._store = _open_store(self._store_option)
        body_error: BaseException | None = None
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
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
            with anyio.move_on_after(5, shield=True):
                await self._store.aclose()
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
        return graph

    async def start(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any = None,
        *,
        trigger: str | None = None,
    ) -> ExecutionHandle:
        """Start an execution in the background and return its handle.

        Raises :class:`WorkflowValidationError` before anything starts if the
        workflow is invalid, and :class:`PranaError` if the engine is not open.
        """
        task_group = self._require_open()
        graph = self.compile(workflow, trigger=trigger)
        machine = ExecutionMachine(
            graph,
            execution_id=new_execution_id(self._clock.now()),
            input=input,
            env=self._env,
        )
        publisher = Publisher(self._middleware, self._engine_subscriptions)
        handle: ExecutionHandle | None = None

        def finished(execution: Execution) -> None:
            self._live.pop(execution.id, None)
            assert handle is not None
            handle._finished(execution)

        supervisor = ExecutionSupervisor(machine, publisher, self._clock.now, finished)
        handle = ExecutionHandle(supervisor)
        self._live[machine.execution_id] = handle
        task_group.start_soon(
            self._supervise, supervisor, name=f"prana execution {machine.execution_id}"
        )
        return handle

    async def run(
        self,
        workflow: Workflow | WorkflowSource,
        input: Any = None,
        *,
        trigger: str | None = None,
    ) -> Execution:
        """Run a workflow to its end and return the execution.

        A failed execution is returned, not raised: look at ``status`` and
        ``error``. Raises :class:`WorkflowValidationError` if the workflow is
        invalid. Cancelling the call does not cancel the execution.
        """
        handle = await self.start(workflow, input, trigger=trigger)
        return await handle.result()

    async def _supervise(self, supervisor: ExecutionSupervisor) -> None:
        await supervisor.run()
        store = self._store
        if store is not None and supervisor.machine.finished:
            await store.commit([supervisor.machine.checkpoint()])

    # ------------------------------------------------------------------ reading

    async def get(self, execution_id: str) -> Execution:
        """The execution with this id, live or kept by the store.

        Raises :class:`ExecutionNotFound` if there is none.
        """
        live = self._live.get(execution_id)
        if live is not None:
            return live.snapshot()
        store = self._require_store()
        found = await store.get_execution(execution_id)
        if found is None:
            raise ExecutionNotFound(f"no execution has id {execution_id!r}")
        return found

    async def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        """Finished executions kept by the store, newest first, filtered."""
        return await self._require_store().list_executions(
            status=status, workflow_id=workflow, limit=limit
        )

    def events(self, *, limit: int = DEFAULT_EVENT_BUFFER) -> Subscription:
        """Subscribe to the events of every execution of this engine from now on.

        Iteration ends when the engine stops.
        """
        subscription = Subscription(limit, on_close=self._engine_subscriptions.discard)
        self._engine_subscriptions.add(subscription)
        return subscription

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


def _open_store(option: Store | str | None) -> Store:
    if option is None or option in ("memory", "memory://"):
        return MemoryStore()
    if isinstance(option, str):
        raise PranaError(
            f"unknown store {option!r}; use None or 'memory://' for an in-memory store"
        )
    if not isinstance(option, Store):
        raise TypeError(f"store must be a Store or a store URL, not {type(option).__name__}")
    return option
