"""The execution supervisor: one per live execution, each in a task of the engine's
(DESIGN §7).

It is the only owner of its execution's state machine. Its loop: take what arrived
in its inbox (node results from its workers, requests, timers and child outcomes
from the engine), feed it to the machine, save the checkpoint and wait for the
writer, then carry out the machine's commands and publish events. So a node's result
is durable before anything that depends on it starts, and an event announces only
what is saved.

A dispatched run of an async action gets a worker task, under a cancel scope of its
own; a plain function is called right here, since a task could neither cancel nor
time it out (decision 0022). Before an action starts, here or in a worker, the
supervisor makes sure the engine still holds the execution (fencing: see
:mod:`._ownership`).

A supervisor steps only while it holds one of the engine's turns, and gives it back
whenever it waits for something other than its own commit (:mod:`._turns`), so that
a thousand executions do not all step in one round of the event loop.

When nothing can run (every node left is waiting) or the execution has ended, the
supervisor saves it and leaves memory: it tells the engine at once, in the same step
as it finds its inbox empty, so that whatever comes for the execution afterwards
finds it in the store, never in a supervisor on its way out. The machine decides what
happens; the supervisor only decides when.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
from anyio import CancelScope

from prana._commands import CancelChildren, CancelRuns, Command, Dispatch
from prana._errors import InternalError, InvalidTransition, PranaError
from prana._journal import ENDED
from prana._machine import ExecutionMachine
from prana._records import (
    Checkpoint,
    ChildOutcome,
    Execution,
    ExecutionStatus,
    NodeResult,
    Suspension,
)
from prana._subworkflows import ExecuteWorkflow

from ._subscription import Publisher
from ._supervision import (
    ControlRequest,
    LeaseLost,
    Message,
    ResumeRequest,
    Services,
    Stopped,
    WakeRequest,
    WorkerFailed,
    apply_message,
    lost,
)
from ._unsaved import UnsavedSteps
from ._worker import Called, Children, call_action, call_now

# Seconds of synchronous actions in one step after which the supervisor lets the loop
# run before it goes on.
LONG_STEP = 0.004

logger = logging.getLogger("prana.engine")


class ExecutionSupervisor:
    """Runs one execution until it waits or ends, owning its state machine.

    ``on_leave`` is called once, when it leaves memory (it takes no more messages),
    ``on_exit`` once its task ends. ``take_from``: the execution was taken from the
    store, where it had that status; its first checkpoint takes it (and fails with
    :class:`Lost` if another engine took it first). ``lease_until``: until when (on
    the monotonic clock) the engine holds it already.
    """

    def __init__(
        self,
        machine: ExecutionMachine,
        publisher: Publisher,
        services: Services,
        *,
        on_leave: Callable[[ExecutionSupervisor], None],
        on_exit: Callable[[ExecutionSupervisor], None],
        take_from: ExecutionStatus | None = None,
        lease_until: float = -math.inf,
    ) -> None:
        self.machine = machine
        self.publisher = publisher
        machine.journal.listen(publisher.listening)
        self._services = services
        self._on_leave = on_leave
        self._on_exit = on_exit
        self._take_from = take_from
        self._clear_request = False
        # Unbounded: every sender is the engine's own (workers, one per run in
        # flight; requests, each of which its caller waits for), and a send must never
        # wait, or a request could hold up the timer actor.
        self._send, self._receive = anyio.create_memory_object_stream[Message](math.inf)
        # Results of synchronous actions called in the last step, taken before the
        # inbox, each with whether its action is pure.
        self._called: deque[tuple[NodeResult, bool]] = deque()
        self._unsaved = UnsavedSteps()  # steps saved with the next (decision 0069)
        self._workers: dict[int, CancelScope] = {}
        self._stop_waiters: list[anyio.Event] = []
        self._saved_once = False
        # Made when someone waits for the first save before it happened (most never
        # do): an event per execution is objects the collector walks for nothing.
        self._saved_event: anyio.Event | None = None
        self._left = False
        self._exited = False
        # Whether it holds one of the engine's turns to step: it starts with the one
        # it was launched under.
        self._turn = True
        self.lease_until = lease_until
        # Whether the last step left the execution waiting or ended; the execution as
        # it is then is made when first asked for (:attr:`last_stop`): most stops,
        # those of executions nobody waits on, never are.
        self.stopped = False
        self._last_stop: Execution | None = None
        self.failure: PranaError | None = None
        self.leftovers: list[WakeRequest | ChildOutcome] = []

    @property
    def execution_id(self) -> str:
        """The id of the execution this supervisor runs."""
        return self.machine.execution_id

    @property
    def last_stop(self) -> Execution | None:
        """The execution as its last step left it waiting or ended (``None`` if it
        did not). The machine does not change after that step unless a message comes,
        which makes it carry on."""
        if not self.stopped:
            return None
        if self._last_stop is None:
            self._last_stop = self.machine.snapshot()
        return self._last_stop

    def deliver(self, message: Message) -> None:
        """Put a message in the inbox (never blocks). The engine delivers only to a
        supervisor that has not left memory, so every message it delivers is taken."""
        if self._left:
            raise InternalError(f"a message came for execution {self.execution_id} after it left")
        self._send.send_nowait(message)

    def stop_waiter(self) -> anyio.Event:
        """An event set when the execution next stops; register it before asking the
        supervisor for anything whose end you will wait for."""
        woken = anyio.Event()
        if self._exited:
            woken.set()
        else:
            self._stop_waiters.append(woken)
        return woken

    async def wait_stop(self, woken: anyio.Event | None = None) -> Execution:
        """Wait until the execution next stops (waits or ends) and return it.

        Raises :class:`PranaError` if the supervisor stopped without that: the
        engine stopped, the store failed, or another engine took the execution.
        """
        await (woken or self.stop_waiter()).wait()
        if self.failure is not None:
            raise self.failure
        assert self.last_stop is not None
        return self.last_stop

    async def wait_saved(self) -> None:
        """Wait until the execution has first been saved.

        Raises :class:`PranaError` if the supervisor stopped before that.
        """
        if self._saved_once or self._exited:
            await anyio.lowlevel.checkpoint()
        else:
            if self._saved_event is None:
                self._saved_event = anyio.Event()
            await self._saved_event.wait()
        if not self._saved_once:
            raise self.failure or Stopped(
                f"execution {self.execution_id} stopped before it was saved"
            )

    async def run(
        self, first: Callable[[float], list[Command]], handed_over: anyio.Event | None = None
    ) -> None:
        """Carry the execution on from ``first`` (the machine's start or recovery, or
        what a request taken with it made of it) until it waits or ends.
        Cancellation (the engine stopping) leaves it as last saved, ready to carry on
        elsewhere.

        With ``handed_over``, nothing runs and no event is published after the first
        save until it is set: whoever started the execution hands its handle out
        first, so that a subscriber sees every event.

        It starts holding the turn it was launched under (:class:`._turns.Turn`)."""
        try:
            with self._services.writer.saving():
                self.publisher.handing_over = handed_over is not None
                await self._drive(first(self._services.clock.now()), handed_over)
            self._services.turns.give_back()
            self._turn = False
            # Let the tasks the last step woke run before anyone hears that the
            # execution stopped: the timer actor arming a new deadline, say, so that
            # a test moving a virtual clock right after run() returns finds it.
            await anyio.lowlevel.checkpoint()
        except Exception as exc:
            self._fail(exc)
        finally:
            if self._turn:
                self._services.turns.give_back()
                self._turn = False
            for worker in self._workers.values():
                worker.cancel()  # stopped short: its runs in flight are not needed
            self._exit()

    @contextlib.asynccontextmanager
    async def _without_turn(self) -> AsyncIterator[None]:
        """Inside, the supervisor waits without its turn (see :mod:`._turns`)."""
        turns = self._services.turns
        turns.give_back()
        self._turn = False
        yield
        await turns.take()
        self._turn = True

    def _fail(self, exc: Exception) -> None:
        expected = _prana_error(exc)
        if expected is not None and not isinstance(expected, InternalError):
            self.failure = expected  # the store failed, or ownership was lost
            logger.warning("execution %s stopped here: %s", self.execution_id, expected)
            return
        # A bug in prana: stop this execution (it carries on from its last
        # checkpoint in the next engine), keep the engine.
        logger.exception("supervisor of execution %s crashed", self.execution_id)
        self.failure = InternalError(
            f"execution {self.execution_id} stopped on an internal error: {exc}"
        )
        self.failure.__cause__ = exc

    def _leave(self) -> None:
        if not self._left:
            self._left = True
            self._on_leave(self)

    def _exit(self) -> None:
        self._leave()
        machine = self.machine
        self.publisher.close()
        if self.failure is None and not self.stopped:
            self.failure = Stopped(
                f"the engine stopped before execution {machine.execution_id} finished "
                f"(it was {machine.status}); it carries on when an engine starts on the same store"
            )
        self._exited = True
        if self._saved_event is not None:
            self._saved_event.set()
        for waiter in self._stop_waiters:
            waiter.set()
        self._stop_waiters.clear()
        self._reject_pending()
        self._send.close()
        self._receive.close()
        self._on_exit(self)

    def _reject_pending(self) -> None:
        """Messages that came as the supervisor stopped short: requests are refused
        with why; timers and child outcomes are kept for the engine to hand on."""
        while (message := self._receive_nowait()) is not None:
            if isinstance(message, (ResumeRequest, ControlRequest)):
                message.error = self.failure or Stopped(f"execution {self.execution_id} stopped")
                message.done.set()
            elif isinstance(message, (WakeRequest, ChildOutcome)):
                self.leftovers.append(message)

    # ------------------------------------------------------------------ steps

    async def _drive(self, commands: list[Command], handed_over: anyio.Event | None) -> None:
        """Steps until the execution waits or ends and nothing more came: save what
        changed, carry out, take the next message."""
        machine = self.machine
        pure: NodeResult | None = None  # the pure action's result the step took alone
        while True:
            checkpoint = self._checkpoint(commands, pure)
            if checkpoint is not None:
                await self._save(checkpoint)
                del checkpoint  # hold on to nothing of the step while waiting
                if handed_over is not None:
                    async with self._without_turn():
                        await handed_over.wait()
                    handed_over = None
                    self.publisher.handing_over = False
            began = time.perf_counter()
            await self._carry_out(commands)
            took = time.perf_counter() - began
            if self._unsaved.count and not self._called:
                # No pure result is left to take (a pure action gave an awaitable):
                # what the steps made is saved before anything is waited for.
                await self._save(machine.checkpoint(take_from=None, clear_request=False))
            if machine.status != "running":
                # Waiters learn of it when the supervisor exits (and the execution
                # has left memory), unless a message arrives first and it carries on.
                self.stopped, self._last_stop = True, None
            message: Message | None
            pure = None
            if self._called:
                # A synchronous action's result, from the last step. Its save was the
                # step's yield to other tasks; without one (durability off, or pure
                # steps saved with the next once they held the loop for their share),
                # or after an action that took long (copying megabytes of input,
                # say), yield here too, so that saving what it made does not add to
                # the stall.
                message, is_pure = self._called.popleft()
                pure = message if is_pure else None
                if (
                    not self._services.durable
                    or took > LONG_STEP
                    or (self._unsaved.count and self._unsaved.share_due())
                ):
                    await anyio.lowlevel.checkpoint()
            elif machine.status == "running":
                message = self._receive_nowait()
                if message is None and self._workers:
                    # A worker started this step may well finish within the round (an
                    # async action that has nothing to wait for): look once more
                    # before giving the turn back and queueing for it again.
                    await anyio.lowlevel.checkpoint()
                    message = self._receive_nowait()
                if message is None:
                    async with self._without_turn():
                        message = await self._receive.receive()
            else:
                message = self._receive_nowait()
                while isinstance(message, LeaseLost):
                    # Saved as waiting or ended, so released: the heartbeat that found
                    # no lease to renew found what this step did.
                    message = self._receive_nowait()
                if message is None:
                    self._leave()  # waiting or ended, and nothing more came
                    return
                self._reclaim(message)
            commands = self._take(message)
            while (more := self._receive_nowait()) is not None:
                pure = None
                commands.extend(self._take(more))
            del message, more

    def _receive_nowait(self) -> Message | None:
        try:
            return self._receive.receive_nowait()
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            return None

    def _reclaim(self, message: Message) -> None:
        """A message came after the execution was saved as waiting or paused (and
        released in the store): take it back with the next checkpoint, then go on."""
        machine = self.machine
        if not isinstance(message, NodeResult) and machine.status in ("suspended", "paused"):
            self._take_from = machine.status
            self.stopped, self._last_stop = False, None

    def _take(self, message: Message) -> list[Command]:
        machine = self.machine
        now = self._services.clock.now()
        if isinstance(message, NodeResult):
            self._services.tally.node_ran(message)
            return machine.handle(message, now)
        if isinstance(message, LeaseLost):
            raise lost(self.execution_id)
        if isinstance(message, WorkerFailed):
            raise message.error
        if isinstance(message, (WakeRequest, ChildOutcome)):
            return apply_message(machine, message, self._services.clock)
        if isinstance(message, ControlRequest) and message.from_store:
            if machine.status != "running":
                # Applied already (a request is picked up until its clearing
                # commits), or the execution left the running state: the engine
                # that asked sees that in the store.
                message.done.set()
                return []
            self._clear_request = True
        try:
            commands = apply_message(machine, message, self._services.clock)
        except InvalidTransition as exc:
            message.error = exc
            commands = []
        message.done.set()
        return commands

    def _checkpoint(
        self, commands: list[Command], after_pure: NodeResult | None
    ) -> Checkpoint | None:
        """What to save before carrying ``commands`` out, if anything (``after_pure``:
        the pure action's result the step took, if it took nothing else)."""
        machine = self.machine
        taking = self._take_from is not None or self._clear_request
        if not commands and not taking and not machine.has_unsaved_changes:
            return None  # a message that changed nothing (a refused request, say)
        if after_pure is not None and self._saved_with_next(commands, after_pure):
            return None
        if (
            self._services.durable
            or taking
            or not self._saved_once
            or machine.status != "running"
            or machine.has_new_suspensions
        ):
            checkpoint = machine.checkpoint(
                take_from=self._take_from, clear_request=self._clear_request
            )
            self._take_from, self._clear_request = None, False
            return checkpoint
        return None

    def _saved_with_next(self, commands: list[Command], result: NodeResult) -> bool:
        """Whether a step that took a pure action's ``result`` is saved with the next
        (decision 0069): while the execution runs on with pure actions called in place
        and nothing else changed but what they did, for a bounded stretch
        (:class:`UnsavedSteps`). Whatever is not pure (an action, a wait, a request,
        a status) is saved as ever, with what came before it."""
        machine = self.machine
        if (
            not self._services.durable  # saved only when it must be, anyway
            or not self._saved_once
            or self._take_from is not None
            or self._clear_request
            or machine.status != "running"
            or machine.saved_status != "running"
            or machine.has_new_suspensions
        ):
            return False
        dispatches = False
        for command in commands:
            if isinstance(command, Dispatch):
                if not command.action.pure or command.not_before is not None:
                    return False
                dispatches = True
        if not (dispatches or self._called):
            return False  # nothing pure to take next
        return self._unsaved.take(result)

    async def _save(self, checkpoint: Checkpoint) -> None:
        services = self._services
        holds_until = services.leases.deadline()  # taken before the lease is written
        # A commit waited for on another thread is not work on the loop: let another
        # execution step meanwhile, so that commits can take many.
        off_the_loop = services.writer.commits_off_the_loop
        async with self._without_turn() if off_the_loop else contextlib.nullcontext():
            applied = await services.writer.save(checkpoint)
        if not applied:
            raise lost(self.execution_id)
        if self._unsaved.count:
            for event in self._unsaved.saved():
                self.publisher.publish(event)
        if checkpoint.kind != "step" and checkpoint.status == "running":
            self.lease_until = holds_until
        for suspension in checkpoint.suspensions_added:
            services.timers.add(suspension)
        if not self._saved_once:
            self._saved_once = True
            if self._saved_event is not None:
                self._saved_event.set()
            machine = self.machine
            if machine.deadline is not None and not machine.finished:
                services.timers.add(Suspension.deadline(machine.execution_id, machine.deadline))

    def lease_holds(self) -> bool:
        """Whether the engine surely still holds the execution, by the monotonic
        clock alone (then :meth:`fence` need not be awaited)."""
        return time.monotonic() < self.lease_until

    async def fence(self) -> None:
        """Return once it is sure the engine still holds the execution (asking the
        store if the lease could have run out); raise :class:`Lost` if it does not.
        Callers on the per-node path look at :meth:`lease_holds` first, so that no
        coroutine is made while the lease holds."""
        if self.lease_holds():
            return
        holds_until = await self._services.leases.confirm(self.execution_id)
        if holds_until is None:
            raise lost(self.execution_id)
        self.lease_until = holds_until

    async def _carry_out(self, commands: list[Command]) -> None:
        clock = self._services.clock
        for command in commands:
            if isinstance(command, Dispatch):
                called: Called | None = None
                if command.not_before is None and not command.action.is_async:
                    # No task for a synchronous action: its result is taken in (and
                    # saved) before its successors start.
                    if not self.lease_holds():
                        await self.fence()
                    outcome = call_now(command, clock)
                    if isinstance(outcome, NodeResult):
                        self._called.append((outcome, command.action.pure))
                        continue
                    called = outcome
                self._start_worker(command, called)
            elif isinstance(command, CancelRuns):
                for execution_index in command.execution_indexes:
                    worker = self._workers.get(execution_index)
                    if worker is not None:
                        worker.cancel()
                        # A batch of children it was running is not needed either.
                        self._services.parent.cancel_batch(
                            self.execution_id, execution_index, command.reason
                        )
            elif isinstance(command, CancelChildren):
                self._services.parent.cancel_children(command.execution_ids, command.reason)
            else:
                if isinstance(command, ENDED) and self.machine.mode == "sync":
                    self._services.parent.child_finished(self.machine.snapshot())
                if self._unsaved.count:
                    self._unsaved.hold(command)  # published once saved
                else:
                    self.publisher.publish(command)

    def _start_worker(self, dispatch: Dispatch, called: Called | None) -> None:
        self._workers[dispatch.run.execution_index] = self._services.start_worker(
            self._work(dispatch, called)
        )

    async def _work(self, dispatch: Dispatch, called: Called | None) -> None:
        """A worker task (see :mod:`._workers`), cancelled through its scope (by
        :class:`CancelRuns`, or when the supervisor stops short): a task group per
        execution would cost every execution, most of which never start a worker.
        Whatever goes wrong in it is the supervisor's to raise.

        It runs the action (after ``dispatch.not_before``), or finishes what
        :func:`call_now` began, and puts the result in the supervisor's inbox (which
        never blocks a sender). Right before the action starts it checks that the
        engine still holds the execution (:meth:`fence`): if not, it raises, and the
        action does not start."""
        clock = self._services.clock
        try:
            if called is None:
                if dispatch.not_before is not None:
                    await clock.sleep_until(dispatch.not_before)
                if not self.lease_holds():
                    await self.fence()
            # Made for each worker: kept on the supervisor, its bound methods would tie
            # the supervisor in a cycle only the garbage collector can free.
            children = Children(self._start_child, self._run_children)
            self._send.send_nowait(await call_action(dispatch, clock, children, called))
        except Exception as exc:  # the lease is lost (fencing), or a bug
            if not self._exited:
                self._send.send_nowait(WorkerFailed(error=exc))
        finally:
            self._workers.pop(dispatch.run.execution_index, None)

    async def _start_child(self, dispatch: Dispatch, request: ExecuteWorkflow) -> str:
        return await self._services.parent.start_child(self.machine, dispatch, request)

    async def _run_children(
        self, dispatch: Dispatch, request: ExecuteWorkflow, deadline: float | None
    ) -> list[Any]:
        return await self._services.parent.run_children(self.machine, dispatch, request, deadline)


def _prana_error(exc: BaseException) -> PranaError | None:
    """The PranaError that ``exc`` is, or that a group of only those holds."""
    if isinstance(exc, PranaError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_prana_error(inner) for inner in exc.exceptions]
        if leaves and all(leaf is not None for leaf in leaves):
            return leaves[0]
    return None
