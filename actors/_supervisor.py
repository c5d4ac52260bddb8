"""The execution supervisor: one per live execution, each in a task (DESIGN §7).

``Engine.run`` drives its execution in the caller's own task while the execution
needs nothing but synchronous actions and commits, and hands it to a task of the
engine's the moment it needs more, or the caller is cancelled (decision 0032).

It is the only owner of its execution's state machine. Its loop: take what arrived
in its inbox (node results from its workers, resume and wake requests from the
engine), feed it to the machine, save the checkpoint and wait for the writer's ack
(or, alone in the engine, commit it on the spot), then carry out the machine's
commands and publish events. A dispatched run of an async action gets a worker task;
a plain function is called right here, since a task could neither cancel nor time
it out (decision 0022). So a node's result is durable before anything that depends on it
starts, and an event announces only what is saved.

When nothing can run (every node left is waiting) or the execution has ended, the
supervisor saves it and exits: a waiting execution holds no memory. The machine
decides what happens; the supervisor only decides when.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from prana import _events as events
from prana._commands import (
    CancelChildren,
    CancelRuns,
    Command,
    Dispatch,
    ExecutionFinished,
    ExecutionPaused,
    ExecutionResumed,
    ExecutionSuspended,
    NodeSkipped,
    NodeSuspended,
    RunFinished,
    RunRetrying,
)
from prana._errors import InvalidTransition, PranaError
from prana._machine import ExecutionMachine
from prana._records import (
    Checkpoint,
    ChildOutcome,
    ErrorInfo,
    Execution,
    NodeResult,
    Suspension,
)
from prana._subworkflows import ExecuteWorkflow

from ._subscription import Publisher
from ._supervision import (
    ControlRequest,
    Lost,
    Message,
    ResumeRequest,
    Services,
    Stopped,
    WakeRequest,
)
from ._worker import Called, call_now, run_node
from ._writer import Batch

logger = logging.getLogger("prana.engine")


class ExecutionSupervisor:
    """Runs one execution until it waits or ends, owning its state machine."""

    def __init__(
        self,
        machine: ExecutionMachine,
        publisher: Publisher,
        services: Services,
        on_exit: Callable[[ExecutionSupervisor], None],
    ) -> None:
        self.machine = machine
        self.publisher = publisher
        self._services = services
        self._on_exit = on_exit
        # The inbox, made when first needed: an execution whose actions are all
        # synchronous and that nobody resumes never receives a message.
        self._send: MemoryObjectSendStream[Message] | None = None
        self._receive: MemoryObjectReceiveStream[Message] | None = None
        # Results of synchronous actions called in the last step, taken before the inbox.
        self._called: deque[NodeResult] = deque()
        # Where a step left off to open the worker task group: see _carry_out.
        self._resuming: tuple[Called | None] | None = None
        self._starting = False
        self._handed_over: anyio.Event | None = None
        self._sequence = 0
        self._settled_nodes: set[str] | None = None  # for progress, once listened to
        self._node_count = len(machine.graph.nodes)
        self._stop_waiters: list[anyio.Event] = []
        self._saved_once = False
        # Made only for a wait_saved that comes before the first save.
        self._saved_event: anyio.Event | None = None
        self._exited = False
        self._cut: tuple[Any, ...] = ()
        self.last_stop: Execution | None = None
        self.failure: PranaError | None = None
        self.leftovers: list[WakeRequest | ChildOutcome] = []

    @property
    def execution_id(self) -> str:
        """The id of the execution this supervisor runs."""
        return self.machine.execution_id

    def deliver(self, message: Message) -> None:
        """Put a message in the inbox (never blocks).

        Raises :class:`anyio.ClosedResourceError` once the supervisor has exited.
        """
        if self._exited:
            raise anyio.ClosedResourceError
        self._inbox()[0].send_nowait(message)

    def _inbox(self) -> tuple[MemoryObjectSendStream[Message], MemoryObjectReceiveStream[Message]]:
        if self._send is None or self._receive is None:
            self._send, self._receive = anyio.create_memory_object_stream[Message](math.inf)
        return self._send, self._receive

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
        if not (self._saved_once or self._exited):
            if self._saved_event is None:
                self._saved_event = anyio.Event()
            await self._saved_event.wait()
        if not self._saved_once:
            raise self.failure or Stopped(
                f"execution {self.execution_id} stopped before it was saved"
            )

    def _set_saved_event(self) -> None:
        if self._saved_event is not None:
            self._saved_event.set()
            self._saved_event = None

    async def run(
        self, first: Callable[[float], list[Command]], handed_over: anyio.Event | None = None
    ) -> None:
        """Carry the execution from ``first`` (the machine's start, recovery, resume
        or wake) until it waits or ends. Cancellation (the engine stopping) leaves it
        as last saved, ready to carry on elsewhere.

        With ``handed_over``, nothing runs and no event is published after the first
        save until it is set: whoever started the execution hands its handle out
        first, so that a subscriber sees every event."""
        try:
            await self._drive_all(self._first_commands(first, handed_over), save=True)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._exit()

    async def run_here(
        self, first: Callable[[float], list[Command]], hand_off: Callable[..., bool]
    ) -> None:
        """Like :meth:`run`, in the caller's task, for as long as the execution needs
        no task of its own: its actions so far are synchronous, and it waits for
        nothing but its commits. When it needs one (an async action to run in a
        worker task, a timer or a child to wait for), or when the caller is
        cancelled, ``hand_off(supervisor, *args)`` starts a task that carries it on
        from that very point (``supervisor.carry_on(*args)``), or returns ``False``
        if it cannot (the engine has stopped), and the supervisor exits.
        Cancellation is re-raised; it never stops the execution.

        A task per execution costs time and memory that ``Engine.run`` need not pay
        for most executions (decision 0032)."""
        left_off: tuple[Any, ...] = ()
        try:
            try:
                left = await self._drive(self._first_commands(first, None), None, save=True)
            except anyio.get_cancelled_exc_class():
                left_off, self._cut = self._cut, ()
                raise
            if left is not None:
                left_off = (left,)
                return
            await anyio.lowlevel.checkpoint()  # as run() does before it exits
        except Exception as exc:
            self._fail(exc)
        finally:
            if not left_off or not hand_off(self, *left_off):
                self._exit()

    async def carry_on(
        self,
        commands: list[Command],
        checkpoint: Checkpoint | None = None,
        batch: Batch | None = None,
    ) -> None:
        """Carry on, in a task of its own, an execution that :meth:`run_here` handed
        off: carry out ``commands`` once ``checkpoint`` (if any) is saved in
        ``batch``."""
        try:
            if checkpoint is not None and batch is not None:
                await batch.done.wait()
                self._saved(checkpoint, batch.applied(checkpoint))
            await self._drive_all(commands, save=False)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._exit()

    def _first_commands(
        self, first: Callable[[float], list[Command]], handed_over: anyio.Event | None
    ) -> list[Command]:
        machine = self.machine
        self._starting = machine.status == "pending"
        self._handed_over = handed_over
        machine.notices = self.publisher.listening
        return first(self._services.clock.now())

    async def _drive_all(self, commands: list[Command], *, save: bool) -> None:
        # Without worker tasks, until an async action needs one: most steps call
        # synchronous actions only, and a task group costs time and memory.
        left = await self._drive(commands, None, save=save)
        if left is not None:
            async with anyio.create_task_group() as workers:
                await self._drive(left, workers, save=False)
                workers.cancel_scope.cancel()
        # Let the tasks the last step woke run before anyone hears that the
        # execution stopped: the timer actor arming a new deadline, say, so that
        # a test moving a virtual clock right after run() returns finds it.
        await anyio.lowlevel.checkpoint()

    def _fail(self, exc: Exception) -> None:
        expected = _prana_error(exc)
        if expected is not None:  # the store failed, or ownership was lost
            self.failure = expected
        else:  # a bug in prana: stop this execution, keep the engine
            logger.exception("supervisor of execution %s crashed", self.execution_id)
            self.failure = PranaError(
                f"execution {self.execution_id} stopped on an internal error: {exc}"
            )
            self.failure.__cause__ = exc

    def _exit(self) -> None:
        machine = self.machine
        self.publisher.close()
        if self.failure is None and self.last_stop is None:
            self.failure = Stopped(
                f"the engine stopped before execution {machine.execution_id} finished "
                f"(it was {machine.status}); it carries on when an engine starts on the same store"
            )
        self._exited = True
        self._set_saved_event()
        for waiter in self._stop_waiters:
            waiter.set()
        self._stop_waiters.clear()
        self._reject_pending()
        self._on_exit(self)
        if self._send is not None and self._receive is not None:
            self._send.close()
            self._receive.close()

    # ------------------------------------------------------------------ steps

    async def _drive(
        self, commands: list[Command], workers: TaskGroup | None, *, save: bool
    ) -> list[Command] | None:
        """Steps until the execution waits or ends: save what changed, wait for the
        writer, carry out, take the next message. Without ``workers``, return the
        commands left when one needs a worker task, or ``[]`` when the execution
        must wait for a message while running (the caller opens a task group and
        drives on with them, ``save=False``: they were saved).

        Where a cancellation cuts it short, ``_cut`` says how to carry on (the
        arguments of :meth:`carry_on`)."""
        machine = self.machine
        while True:
            if save:
                checkpoint = self._checkpoint(commands)
                if checkpoint is not None:
                    writer = self._services.writer
                    applied = writer.commit_now(checkpoint)
                    if applied is None:
                        batch = writer.submit(checkpoint)
                        try:
                            await batch.done.wait()
                        except BaseException:
                            self._cut = (commands, checkpoint, batch)
                            raise
                        self._saved(checkpoint, batch.applied(checkpoint))
                        # Hold on to nothing of the step while waiting for the
                        # next: the batch keeps every checkpoint in it alive.
                        del batch
                    else:
                        self._saved(checkpoint, applied)
                        try:
                            await anyio.lowlevel.checkpoint()  # the step's yield
                        except BaseException:
                            self._cut = (commands,)
                            raise
                    del checkpoint
                if self._handed_over is not None:
                    await self._handed_over.wait()
                    self._handed_over = None
            if self._starting:
                self._starting = False
                self._announce_start()
            save = True
            left = self._carry_out(commands, workers)
            if left is not None:
                return left
            if machine.status != "running":
                # Waiters learn of it when the supervisor exits (and the execution
                # has left memory), unless a message arrives first and it carries on.
                self.last_stop = machine.snapshot()
            # The next message.
            message: Message | None
            if self._called:
                # A synchronous action's result, from the last step. Its checkpoint
                # was the step's yield to other tasks; without one (durability
                # off), yield here.
                message = self._called.popleft()
                if not self._services.durable:
                    try:
                        await anyio.lowlevel.checkpoint()
                    except BaseException:
                        self._called.appendleft(message)
                        self._cut = ([],)
                        raise
            elif machine.status == "running":
                if workers is None:
                    return []  # a worker, timer or child will send it: drive on with workers
                message = await self._inbox()[1].receive()
            else:
                message = self._receive_nowait()
                if message is None:
                    return None  # waiting or ended, and nothing more arrived
                self._reclaim(message)
            commands = self._take(message)
            while (more := self._receive_nowait()) is not None:
                commands.extend(self._take(more))
            del message, more

    def _receive_nowait(self) -> Message | None:
        receive = self._receive
        if receive is None or not receive.statistics().current_buffer_used:
            return None  # cheaper than the exception receive_nowait would raise
        return receive.receive_nowait()

    def _reclaim(self, message: Message) -> None:
        """A message came after the execution was saved as waiting or paused (and
        released): take it back with the next checkpoint, then go on."""
        machine = self.machine
        if not isinstance(message, NodeResult) and machine.status in ("suspended", "paused"):
            machine.take_on_save = True
            machine.take_from = machine.status
            self.last_stop = None

    def _take(self, message: Message) -> list[Command]:
        machine = self.machine
        now = self._services.clock.now()
        machine.notices = self.publisher.listening
        if isinstance(message, NodeResult):
            return machine.handle(message, now)
        if isinstance(message, WakeRequest):
            return machine.wake(message.execution_index, now)
        if isinstance(message, ChildOutcome):
            return machine.child_ended(message, now)
        if isinstance(message, ControlRequest) and message.from_store:
            if machine.status != "running":
                # Applied already (a request is picked up until its clearing
                # commits), or the execution left the running state: the engine
                # that asked sees that in the store.
                message.done.set()
                return []
            machine.clear_request = True
        try:
            if isinstance(message, ResumeRequest):
                commands = machine.resume(message.node_key, message.data, now)
            elif message.action == "cancel":
                commands = machine.cancel(message.reason, now)
            else:
                commands = machine.pause(now)
        except InvalidTransition as exc:
            message.error = exc
            commands = []
        message.done.set()
        return commands

    def _checkpoint(self, commands: list[Command]) -> Checkpoint | None:
        """What to save before carrying ``commands`` out, if anything."""
        machine = self.machine
        if not commands and not machine.has_unsaved_changes:
            return None  # a message that changed nothing (a refused request, say)
        if (
            self._services.durable
            or not self._saved_once
            or machine.status != "running"
            or machine.has_new_suspensions
            or machine.clear_request
        ):
            return machine.checkpoint()
        return None

    def _saved(self, checkpoint: Checkpoint, applied: bool) -> None:
        machine = self.machine
        services = self._services
        if not applied:
            raise Lost(
                f"execution {machine.execution_id} is now run by another engine "
                "(this engine's lease expired, or it took the execution first); it stopped here"
            )
        for suspension in checkpoint.suspensions_added:
            services.timers.add(suspension)
        if not self._saved_once:
            self._saved_once = True
            self._set_saved_event()
            if machine.deadline is not None and not machine.finished:
                services.timers.add(Suspension.deadline(machine.execution_id, machine.deadline))

    def _announce_start(self) -> None:
        if self.publisher.listening:
            workflow = self.machine.graph.workflow
            self._publish(
                events.ExecutionStarted,
                self._services.clock.now(),
                workflow_id=workflow.id,
                workflow_version=workflow.version,
                node_count=self._node_count,
            )

    def _carry_out(
        self, commands: list[Command], workers: TaskGroup | None
    ) -> list[Command] | None:
        """Carry ``commands`` out; without ``workers``, stop at a dispatch that needs
        a worker task and return the commands from it on."""
        listening = self.publisher.listening
        clock = self._services.clock
        now = clock.now
        for position, command in enumerate(commands):
            if isinstance(command, Dispatch):
                called: Called | None = None
                if self._resuming is not None:  # began before the task group opened
                    (called,), self._resuming = self._resuming, None
                else:
                    if listening:
                        run = command.run
                        self._publish(
                            events.NodeStarted,
                            now(),
                            node_key=run.node_key,
                            run_index=run.run_index,
                            execution_index=run.execution_index,
                        )
                    if command.not_before is None and not command.action.is_async:
                        # No task for a synchronous action: its result is taken in
                        # (and saved) before its successors start.
                        outcome = call_now(command, clock)
                        if isinstance(outcome, NodeResult):
                            self._called.append(outcome)
                            continue
                        called = outcome
                if workers is None:
                    self._resuming = (called,)
                    return commands[position:]
                workers.start_soon(
                    run_node, command, self._inbox()[0].clone(), clock, self._start_child, called
                )
            elif isinstance(command, CancelRuns):
                if workers is not None:
                    workers.cancel_scope.cancel()
            elif isinstance(command, CancelChildren):
                self._services.parent.cancel_children(command.execution_ids, command.reason)
            else:
                if isinstance(command, ExecutionFinished) and self.machine.mode == "sync":
                    self._services.parent.child_finished(self.machine.snapshot())
                if listening:
                    self._announce(command)
        return None

    async def _start_child(self, dispatch: Dispatch, request: ExecuteWorkflow) -> str:
        return await self._services.parent.start_child(self.machine, dispatch, request)

    def _reject_pending(self) -> None:
        """Messages that came as the supervisor stopped: requests are refused (the
        caller looks for the execution again); timers and child outcomes are kept
        for the engine to hand on."""
        while (message := self._receive_nowait()) is not None:
            if isinstance(message, (ResumeRequest, ControlRequest)):
                message.error = self.failure or Stopped(f"execution {self.execution_id} stopped")
                message.done.set()
            elif isinstance(message, (WakeRequest, ChildOutcome)):
                self.leftovers.append(message)

    # ------------------------------------------------------------------ events

    def _announce(self, command: Command) -> None:
        now = self._services.clock.now()
        if isinstance(command, RunFinished):
            run = command.run
            self._settled().add(run.node_key)
            kind = events.NodeCompleted if run.status == "completed" else events.NodeFailed
            self._publish(kind, now, node_key=run.node_key, run=run, progress=self._progress())
        elif isinstance(command, RunRetrying):
            run = command.run
            self._publish(
                events.NodeRetrying,
                now,
                node_key=run.node_key,
                run=run,
                next_attempt=command.next_attempt,
                at=command.at,
            )
        elif isinstance(command, NodeSkipped):
            self._settled().add(command.node_key)
            self._publish(
                events.NodeSkipped, now, node_key=command.node_key, progress=self._progress()
            )
        elif isinstance(command, NodeSuspended):
            suspension = command.suspension
            self._publish(
                events.NodeSuspended,
                now,
                node_key=suspension.node_key,
                suspension=suspension,
            )
        elif isinstance(command, ExecutionSuspended):
            self._publish(events.ExecutionSuspended, now, suspensions=command.suspensions)
        elif isinstance(command, ExecutionPaused):
            self._publish(events.ExecutionPaused, now)
        elif isinstance(command, ExecutionResumed):
            self._publish(events.ExecutionResumed, now, cause=command.cause)
        elif isinstance(command, ExecutionFinished):
            error: ErrorInfo | None = self.machine.error
            if command.status == "completed":
                self._publish(events.ExecutionCompleted, now)
            elif command.status == "cancelled":
                self._publish(events.ExecutionCancelled, now, error=error)
            elif command.status == "timed_out":
                self._publish(events.ExecutionTimedOut, now, error=error)
            else:
                self._publish(events.ExecutionFailed, now, error=error, status=command.status)

    def _progress(self) -> float:
        return len(self._settled()) / self._node_count if self._node_count else 1.0

    def _settled(self) -> set[str]:
        if self._settled_nodes is None:
            self._settled_nodes = set()
        return self._settled_nodes

    def _publish(self, kind: type[events.Event], now: float, **fields: object) -> None:
        self._sequence += 1
        event = kind(
            execution_id=self.machine.execution_id, sequence=self._sequence, time=now, **fields
        )
        self.publisher.publish(event)


def _prana_error(exc: BaseException) -> PranaError | None:
    """The PranaError that ``exc`` is, or that a group of only those holds."""
    if isinstance(exc, PranaError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_prana_error(inner) for inner in exc.exceptions]
        if leaves and all(leaf is not None for leaf in leaves):
            return leaves[0]
    return None
