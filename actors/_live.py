"""The executions live in one engine, and the one way to reach an execution (DESIGN §7).

An execution is in memory here (a supervisor runs it), waiting in the store, or
running in another engine. Everything that concerns one execution (a resume, a
control request, a timer, a child that ended, recovery) reaches it through
:meth:`LiveExecutions.deliver`:

* live here: the message goes to its supervisor's inbox. A supervisor leaves this
  table in the same step as it decides to stop, so a message delivered is always
  taken; one that comes later finds the execution in the store.
* waiting in the store (suspended, paused, failed): the execution is restored, the
  message applied to it, and a supervisor launched that takes it from the store with
  its first checkpoint (applied only if nobody changed it since it was read: two
  engines never both take it).
* running, but its engine is gone (its process is dead, or its lease expired): with
  ``claim``, the engine claims it, restores it from its last checkpoint, applies the
  message, and then (if it still runs) runs again what was in flight.
* otherwise it is returned as stored: the caller decides (leave a request for its
  engine, or do nothing).

Nothing else reaches into the table of supervisors.

This module is past 600 lines because it is that one owner: every way an execution
comes into memory here (started, queued, claimed, taken over, restored for a request)
and leaves it, and what is done with one that cannot be restored, keep the table's
rules (a message delivered is always taken; an execution is live at most once) in
one place.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from prana._commands import Command
from prana._compiler import ExecutionGraph
from prana._control import unrestorable_checkpoint
from prana._errors import ExecutionNotFound, PranaError, StoreError
from prana._limits import Limits
from prana._machine import ExecutionMachine
from prana._records import (
    ChildOutcome,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    StoredExecution,
    Suspension,
)
from prana._snapshot import runs_wanted
from prana._wanted import NO_RUNS, RunsWanted
from prana.storage import Store

from ._catalog import Catalog
from ._clock import Clock
from ._ownership import Leases, LeftToOthers, dead_owners
from ._services import BackgroundServices, as_bug, is_transient
from ._subscription import Publisher
from ._supervision import (
    ControlRequest,
    Lost,
    Parent,
    ResumeRequest,
    Services,
    WakeRequest,
    apply_message,
    check_request,
)
from ._supervisor import ExecutionSupervisor
from ._tally import Tally
from ._turns import DEFAULT_STEPS_AT_ONCE, Turn, Turns
from ._worker import private_copy
from ._workers import WorkerTasks

if TYPE_CHECKING:
    from ._queue import QueueService
    from ._timers import TimerActor
    from ._writer import CheckpointWriter

logger = logging.getLogger("prana.engine")

# How often (seconds) a caller following an execution it cannot watch here (waiting
# in the store, or running in another engine) reads the store again.
WATCH_POLL = 1.0
_WAITING: tuple[ExecutionStatus, ...] = ("suspended", "paused")
# How many executions are taken in from the store (resumed, woken, controlled) in one
# round of the loop, among the steps of those running.
TAKE_INS_AT_ONCE = 4
# What comes for an execution from outside it (its workers send node results).
Outside = ResumeRequest | ControlRequest | WakeRequest | ChildOutcome


class Unrestorable(PranaError):
    """An execution in the store cannot be carried on here: its workflow is missing
    or no longer compiles with this engine's actions, or its saved state does not
    fit its workflow. ``stored`` is the execution; the cause is ``__cause__``."""

    def __init__(self, stored: StoredExecution, cause: PranaError) -> None:
        super().__init__(
            f"execution {stored.id} ({stored.workflow_id} v{stored.workflow_version}) "
            f"cannot be carried on by this engine: {cause}"
        )
        self.stored = stored
        self.__cause__ = cause


def _no_runs(stored: StoredExecution) -> RunsWanted:
    return NO_RUNS


class LiveExecutions:
    """The supervisors of one engine, by execution id; see the module's docstring."""

    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        leases: Leases,
        writer: CheckpointWriter,
        timers: TimerActor,
        clock: Clock,
        durable: bool,
        env: Mapping[str, str],
        limits: Limits,
        publisher: Callable[[], Publisher],
        parent: Callable[[LiveExecutions], Parent],
        background: BackgroundServices,
        task_group: TaskGroup,
        workers: WorkerTasks,
        tally: Tally,
        queue: QueueService,
        others_alive: Callable[[], bool] = lambda: False,
        steps_at_once: int = DEFAULT_STEPS_AT_ONCE,
    ) -> None:
        self._store = store
        # Whether a new execution starts or is queued, and when to claim from the queue.
        self._queue = queue
        # Whether other engines on the store are alive: what this one cannot restore
        # (it lacks the workflow's actions, say) is left to them.
        self._others_alive = others_alive
        self._left_to_others = LeftToOthers(grace=2 * leases.term)
        self._catalog = catalog
        self._leases = leases
        self._background = background
        # What supervisors are lent; ``parent`` does for them what concerns children.
        self._services = Services(
            clock=clock,
            writer=writer,
            timers=timers,
            leases=leases,
            durable=durable,
            parent=parent(self),
            start_worker=workers.start,
            turns=Turns(steps_at_once),
            tally=tally,
        )
        # Taking an execution in reads it from the store and restores it: many times a
        # step's work, so fewer of them share a round of the loop (TAKE_INS_AT_ONCE).
        self._take_ins = Turns(TAKE_INS_AT_ONCE)
        self._env = env
        self._limits = limits
        self._publisher = publisher
        self._task_group = task_group
        self._supervisors: dict[str, ExecutionSupervisor] = {}
        self._running: set[ExecutionSupervisor] = set()  # tasks not ended yet
        self._watchers: dict[str, anyio.Event] = {}
        self._busy = 0
        self._idle: anyio.Event | None = None
        self._open = True

    # ------------------------------------------------------------------ reading

    def get(self, execution_id: str) -> ExecutionSupervisor | None:
        """The supervisor of ``execution_id`` if it is live here."""
        return self._supervisors.get(execution_id)

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._supervisors

    @property
    def running(self) -> int:
        """How many executions are in memory here, saving their last step included."""
        return len(self._running)

    def __len__(self) -> int:
        return len(self._supervisors)

    def supervisors(self) -> list[ExecutionSupervisor]:
        """Every supervisor live now."""
        return list(self._supervisors.values())

    def watch(self, execution_id: str) -> anyio.Event:
        """An event set when a supervisor for ``execution_id`` starts or leaves here."""
        return self._watchers.setdefault(execution_id, anyio.Event())

    async def load(
        self, execution_id: str, *, to_run: bool = False, runs: bool = True
    ) -> StoredExecution:
        """The execution as stored. ``to_run``: to carry it on, so of its runs only
        those its next steps need, once its workflow is compiled here (decision 0066:
        waking a long loop then reads what its next step needs, not its whole trail).
        Without ``runs``, none of its runs. Raises :class:`ExecutionNotFound`."""
        wanted = self._runs_wanted if to_run else None if runs else _no_runs
        stored = await self._store.load_execution(execution_id, wanted=wanted)
        if stored is None:
            raise ExecutionNotFound(
                f"no execution has id {execution_id!r}; list them with 'prana list'"
            )
        return stored

    def _runs_wanted(self, stored: StoredExecution) -> RunsWanted | None:
        graph = self._catalog.compiled(stored.workflow_hash, stored.trigger)
        return None if graph is None else runs_wanted(graph, stored)

    async def wait_for(self, execution_id: str, done: Callable[[Execution], bool]) -> Execution:
        """Follow ``execution_id`` wherever it runs until ``done(execution)`` holds
        at one of its stops; return it then. Raises :class:`ExecutionNotFound`.

        Not live here, it is read whole (its audit trail too) only when the store
        shows it stopped at a revision not seen yet: one that waits, or runs in
        another engine, is looked at in its row alone, however long its trail."""
        seen: tuple[ExecutionStatus, int] | None = None
        while True:
            supervisor = self._supervisors.get(execution_id)
            if supervisor is not None:
                try:
                    execution = await supervisor.wait_stop()
                except (Lost, StoreError):
                    continue  # another engine, or this one later, carries it on
                if done(execution):
                    return execution
                continue
            changed = self.watch(execution_id)
            found = await self._store.execution_revision(execution_id)
            if found is None:
                await self.load(execution_id)  # raises ExecutionNotFound
            elif found[0] != "running" and found != seen:
                stored = await self.load(execution_id)
                seen = (stored.status, stored.revision)
                if stored.status != "running":
                    execution = stored.to_execution()
                    if done(execution):
                        return execution
            if execution_id in self._supervisors:
                continue
            # Woken when a supervisor for it starts or leaves here; the store is
            # read again now and then in case another engine carried it on.
            with anyio.move_on_after(WATCH_POLL):
                await changed.wait()

    async def wait_idle(self) -> None:
        """Wait until no execution runs here and nothing is being handed to one."""
        while self._running or self._busy:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count as work in flight (for :meth:`wait_idle`) while inside."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            self._check_idle()

    def close(self) -> None:
        """Launch nothing more: the engine is stopping."""
        self._open = False

    def spawn(self, function: Callable[..., Any], *args: Any, counted: bool = True) -> bool:
        """Run ``function(*args)`` in a task of the engine's (counted as work in
        flight, unless ``counted=False``); ``False`` (nothing runs) once the engine is
        stopping. A :class:`PranaError` it raises is logged; a bug (anything else)
        ends the engine with an :class:`InternalError`, as in every background
        service."""
        if not self._open:
            return False

        async def task() -> None:
            with self.busy() if counted else contextlib.nullcontext():
                name = getattr(function, "__name__", "a task")
                try:
                    await function(*args)
                except Exception as exc:
                    if not is_transient(exc):
                        raise as_bug(exc, name) from exc
                    logger.warning("%s failed: %s", name, exc)

        self._task_group.start_soon(task)
        return True

    # ------------------------------------------------------------------ starting

    @property
    def parent(self) -> Parent:
        """What the engine does about children for its supervisors."""
        return self._services.parent

    async def start(
        self,
        graph: ExecutionGraph,
        input: Any,
        execution_id: str,
        turn: Turn,
        *,
        handed_over: anyio.Event | None = None,
        priority: int | None = None,
        **fields: Any,
    ) -> ExecutionSupervisor:
        """Store ``graph``'s definition (once) and launch a new execution of it, which
        takes ``turn`` (see :meth:`turn`: the rest of the work of starting an execution
        is done under it too); ``fields`` go to its :class:`ExecutionMachine` (a
        child's parent, say). See :meth:`ExecutionSupervisor.run` for
        ``handed_over``.

        A workflow with a concurrency key, or any when the engine runs
        ``max_running`` executions already, is queued instead (see
        :meth:`ExecutionMachine.queue`: raises :class:`ExpressionError` if the key
        cannot be rendered): the supervisor saves it ``queued`` and leaves, and an
        engine that claims it starts it (:meth:`start_claimed`)."""
        self._require_open()
        await self._catalog.save(graph, self._store, self._services.clock.now())
        machine = ExecutionMachine(
            graph,
            execution_id=execution_id,
            input=input,
            env=self._env,
            limits=self._limits,
            copy_on_read=private_copy,
            **fields,
        )
        keyed = graph.concurrency_key is not None
        if not keyed and self._queue.admits(self.running):
            return self._launch(machine, machine.start, turn, handed_over=handed_over)
        queued = machine.queue(self._services.clock.now(), priority)
        self._queue.queued(keyed=keyed)
        return self._launch(machine, _given(queued), turn, handed_over=handed_over)

    async def start_in_state(self, machine: ExecutionMachine, turn: Turn) -> ExecutionSupervisor:
        """Launch a new execution whose machine was made in a state (a rerun's, see
        :mod:`prana._rerun`): its definition is stored (once), and it carries on from
        that state, saved first."""
        self._require_open()
        await self._catalog.save(machine.graph, self._store, self._services.clock.now())
        return self._launch(machine, machine.recover, turn)

    def turn(self) -> contextlib.AbstractAsyncContextManager[Turn]:
        """Inside, the caller holds one of the turns executions step in (see
        :mod:`._turns`): starting an execution is a step too, so that a thousand
        started at once are set up a few dozen at a time, with the loop's other tasks
        run in between. An execution launched inside takes the turn with it."""
        return self._services.turns.held()

    # ------------------------------------------------------------------ the one operation

    async def deliver(
        self, execution_id: str, message: Outside, *, claim: bool = False
    ) -> ExecutionSupervisor | StoredExecution:
        """Hand ``message`` to the execution wherever it is (see the module's
        docstring); return the supervisor that now runs it, or the execution as
        stored when it is not this engine's to run (nothing was done).

        Raises :class:`ExecutionNotFound` for an unknown id; for a request
        (resume, control) that the execution cannot take, :class:`InvalidTransition`,
        changing nothing; :class:`Unrestorable` if it cannot be carried on here.
        Returns without letting other tasks run once the message is delivered, so
        the caller can register a stop waiter before the supervisor acts on it.
        """
        while True:
            supervisor = self._supervisors.get(execution_id)
            if supervisor is not None:
                supervisor.deliver(message)
                return supervisor
            async with self._take_ins.held(), self.turn() as turn:  # a step, a heavy one
                taken = await self._take(execution_id, message, claim, turn)
            if taken is not None:
                return taken

    async def _take(
        self, execution_id: str, message: Outside, claim: bool, turn: Turn
    ) -> ExecutionSupervisor | StoredExecution | None:
        """:meth:`deliver` to an execution that is not live here; ``None`` if it was
        launched here meanwhile (deliver to that supervisor)."""
        stored = await self.load(execution_id, to_run=True)
        if execution_id in self._supervisors:
            return None
        if stored.status == "running":
            if not claim or not await self._claim(stored):
                return stored
            # Ours now, from its last checkpoint: the request first, then (if it
            # still runs) the runs its engine had in flight, again. So a cancel or a
            # pause does not start them only to stop them.
            stored = await self.load(execution_id, to_run=True)
            machine = await self._restore(stored)  # Unrestorable: the caller decides
            commands = self._apply(machine, message)
            if machine.status == "running":
                commands += machine.recover(self._services.clock.now())
            return self._launch(
                machine, _given(commands), turn, lease_until=self._leases.deadline()
            )
        if isinstance(message, (ResumeRequest, ControlRequest)):
            check_request(message, stored)
        elif stored.status not in _WAITING:
            return stored  # a timer or child outcome for an execution that moved on
        machine = await self._restore(stored)
        if execution_id in self._supervisors:
            return None
        commands = self._apply(machine, message)
        if not commands and not machine.has_unsaved_changes:
            return stored  # nothing to do: the timer was not due, say
        return self._launch(machine, _given(commands), turn, take_from=stored.status)

    def _apply(self, machine: ExecutionMachine, message: Outside) -> list[Command]:
        commands = apply_message(machine, message, self._services.clock)  # may raise
        if isinstance(message, (ResumeRequest, ControlRequest)):
            message.done.set()
        return commands

    async def carry_on(self, execution_id: str) -> ExecutionSupervisor | StoredExecution:
        """The supervisor running ``execution_id`` here, if it runs here or its engine
        is gone (then it is claimed and carried on from its last checkpoint);
        otherwise the execution as stored (waiting, ended, or running elsewhere).
        Raises :class:`ExecutionNotFound`, or :class:`Unrestorable`."""
        while True:
            supervisor = self._supervisors.get(execution_id)
            if supervisor is not None:
                return supervisor
            async with self.turn() as turn:
                taken = await self._carry_on(execution_id, turn)
            if taken is not None:
                return taken

    async def _carry_on(
        self, execution_id: str, turn: Turn
    ) -> ExecutionSupervisor | StoredExecution | None:
        stored = await self.load(execution_id)
        if execution_id in self._supervisors:
            return None
        if stored.status != "running" or not await self._claim(stored):
            return stored
        stored = await self.load(execution_id, to_run=True)  # as it stands now that it is ours
        machine = await self._restore(stored)  # Unrestorable: the caller decides
        return self._launch(machine, machine.recover, turn, lease_until=self._leases.deadline())

    async def recover(self, execution_ids: Iterable[str]) -> None:
        """Carry on, from their last checkpoint, running executions this engine has
        just claimed (their engine died). One that cannot be restored here fails,
        with an error that says why."""
        for problem in await self._launch_claimed(
            execution_ids, "running", self._leases.deadline()
        ):
            await self.cannot_restore(problem)

    async def start_claimed(
        self, execution_ids: Iterable[str], lease_until: float
    ) -> list[Unrestorable]:
        """Start queued executions this engine has just claimed (until ``lease_until``,
        monotonic); return those it cannot restore (the caller decides: another
        engine may run them, or they fail)."""
        return await self._launch_claimed(execution_ids, "queued", lease_until)

    async def _launch_claimed(
        self, execution_ids: Iterable[str], status: ExecutionStatus, lease_until: float
    ) -> list[Unrestorable]:
        problems = []
        for execution_id in execution_ids:
            if execution_id in self._supervisors:
                continue
            async with self.turn() as turn:
                stored = await self.load(execution_id, to_run=True)
                if stored.status != status or stored.owner != self._leases.owner:
                    continue  # moved on meanwhile (cancelled, say)
                try:
                    machine = await self._restore(stored)
                except Unrestorable as exc:
                    problems.append(exc)
                    continue
                if execution_id in self._supervisors:
                    continue
                if status == "queued":
                    first, take_from = machine.start, status
                else:
                    logger.info("carrying on execution %s from its last checkpoint", execution_id)
                    first, take_from = machine.recover, None
                self._launch(machine, first, turn, take_from=take_from, lease_until=lease_until)
        return problems

    async def _claim(self, stored: StoredExecution) -> bool:
        """Claim a running execution whose engine is gone, for this engine to carry on;
        ``False`` if its engine is not gone."""
        gone = dead_owners([stored.owner])
        if stored.owner == self._leases.owner:
            gone.append(stored.owner)  # this engine's, and not live here: stopped short
        taken = await self._store.claim_orphans(
            owner=self._leases.owner,
            lease_expires=self._leases.expiry(),
            now=time.time(),
            dead_owners=gone,
            execution_ids=[stored.id],
        )
        return bool(taken)

    async def cannot_restore(self, problem: Unrestorable) -> bool:
        """An execution cannot be restored here: if other engines are alive, leave it
        to them (letting go of it if this engine holds it) and return ``True``;
        otherwise, or if it keeps coming back for longer than any engine able to
        carry it on would leave it (:class:`LeftToOthers`), end it, failed with the
        reason (:meth:`end_unrestorable`), and return ``False``. Raises
        :class:`StoreError`."""
        stored = problem.stored
        leave = self._left_to_others.leave(stored.id) if self._others_alive() else False
        if leave is False:
            await self.end_unrestorable(problem)
            return False
        if stored.owner == self._leases.owner:
            await self._leases.release([stored.id])
        if leave is None:  # said once: it comes back at every heartbeat meanwhile
            logger.warning("left execution %s to the other engines: %s", stored.id, problem)
        return True

    async def end_unrestorable(
        self,
        problem: Unrestorable,
        status: ExecutionStatus = "failed",
        error: ErrorInfo | None = None,
    ) -> bool:
        """End an execution that cannot be restored here (failed with an error that
        says why, unless ``status`` and ``error`` say otherwise), without running
        anything: its waiting and running nodes are cancelled. ``False`` if another
        engine took or changed it meanwhile. Raises :class:`StoreError`."""
        stored = problem.stored
        if error is None:
            error = ErrorInfo(
                code="cannot_restore",
                message=f"{problem}; make the workflow's actions available to the engine "
                f"and run it again with 'prana retry {stored.id}'",
            )
        checkpoint = unrestorable_checkpoint(stored, status, error, self._services.clock.now())
        lost = await self._store.commit(
            [checkpoint],
            owner=self._leases.owner,
            lease_expires=self._leases.expiry(),
            now=self._services.clock.now(),
        )
        if stored.id in lost:
            return False
        logger.error("execution %s %s: %s", stored.id, status, error.message)
        return True

    # ------------------------------------------------------------------ supervisors

    def _launch(
        self,
        machine: ExecutionMachine,
        first: Callable[[float], list[Command]],
        turn: Turn,
        *,
        take_from: ExecutionStatus | None = None,
        lease_until: float | None = None,
        handed_over: anyio.Event | None = None,
    ) -> ExecutionSupervisor:
        task_group = self._require_open()
        supervisor = ExecutionSupervisor(
            machine,
            self._publisher(),
            self._services,
            on_leave=self._left,
            on_exit=self._exited,
            take_from=take_from,
            lease_until=-float("inf") if lease_until is None else lease_until,
        )
        execution_id = machine.execution_id
        self._supervisors[execution_id] = supervisor
        self._running.add(supervisor)
        self._notify(execution_id)
        timers = self._services.timers
        for suspension in machine.suspensions:  # taken from the store: its waits are ours
            timers.add(suspension)
        if machine.deadline is not None and machine.status != "pending" and not machine.finished:
            timers.add(Suspension.deadline(execution_id, machine.deadline))
        turn.hand_over()  # the supervisor starts with it: see ExecutionSupervisor.run
        task_group.start_soon(
            supervisor.run, first, handed_over, name=f"prana execution {execution_id}"
        )
        return supervisor

    def _left(self, supervisor: ExecutionSupervisor) -> None:
        if self._supervisors.get(supervisor.execution_id) is supervisor:
            del self._supervisors[supervisor.execution_id]
        self._notify(supervisor.execution_id)
        self._queue.left(was_queued=supervisor.machine.queue_place is not None)

    def _exited(self, supervisor: ExecutionSupervisor) -> None:
        self._running.discard(supervisor)
        for message in supervisor.leftovers:  # came as it stopped short: hand them on
            self.spawn(self._deliver_quietly, supervisor.execution_id, message)
        executions = self._background.service("executions")
        if isinstance(supervisor.failure, StoreError) and self._open:
            # Stopped on the store (locked past busy_timeout, full): the execution is
            # still this engine's, as last saved. Carry it on once the store works
            # again (not counted as work in flight: nobody waits for it).
            delay = executions.failed(supervisor.failure)
            self.spawn(self._carry_on_later, supervisor.execution_id, delay, counted=False)
        elif supervisor.stopped and executions.failures:
            executions.succeeded()
        self._check_idle()

    async def _carry_on_later(self, execution_id: str, delay: float) -> None:
        """Carry on, after ``delay``, an execution whose supervisor stopped on the
        store; again and again, while the store keeps failing."""
        await anyio.sleep(delay)
        try:
            await self.recover([execution_id])
        except StoreError as exc:
            delay = self._background.service("executions").failed(exc)
            self.spawn(self._carry_on_later, execution_id, delay, counted=False)
        except ExecutionNotFound:
            pass  # its first save failed: it never existed

    async def _deliver_quietly(
        self, execution_id: str, message: WakeRequest | ChildOutcome
    ) -> None:
        try:
            await self.deliver(execution_id, message)
        except PranaError as exc:
            logger.warning("could not hand %s to execution %s: %s", message, execution_id, exc)

    def _notify(self, execution_id: str) -> None:
        changed = self._watchers.pop(execution_id, None)
        if changed is not None:
            changed.set()

    def _check_idle(self) -> None:
        if self._idle is not None and not self._running and not self._busy:
            self._idle.set()
            self._idle = None

    async def _restore(self, stored: StoredExecution) -> ExecutionMachine:
        try:
            graph = await self._catalog.graph_for(stored, self._store)
            return ExecutionMachine.restored(
                graph, stored, env=self._env, limits=self._limits, copy_on_read=private_copy
            )
        except PranaError as exc:
            raise Unrestorable(stored, exc) from exc

    def _require_open(self) -> TaskGroup:
        if not self._open:
            raise PranaError(NOT_RUNNING)
        return self._task_group


NOT_RUNNING = "the engine is not running; use it inside 'async with Engine(...) as engine:'"


def _given(commands: list[Command]) -> Callable[[float], list[Command]]:
    """A supervisor's first commands, worked out already."""
    return lambda now: commands
