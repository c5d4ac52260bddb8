"""The execution supervisor: one task per live execution (DESIGN §7).

It is the only owner of its execution's state machine. Its loop: carry out the
commands the machine returns (start a worker task per dispatched node run), receive
the workers' results on its memory channel, feed them to the machine, publish
events. It decides nothing about workflow semantics; the machine does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from prana import _events as events
from prana._commands import (
    CancelRuns,
    Command,
    Dispatch,
    ExecutionFinished,
    NodeSkipped,
    RunFinished,
)
from prana._machine import ExecutionMachine
from prana._records import ErrorInfo, Execution, NodeResult

from ._subscription import Publisher
from ._worker import run_node

logger = logging.getLogger("prana.engine")


class ExecutionSupervisor:
    """Runs one execution to its end, owning its state machine."""

    def __init__(
        self,
        machine: ExecutionMachine,
        publisher: Publisher,
        now: Callable[[], float],
        on_finished: Callable[[Execution], None],
    ) -> None:
        self.machine = machine
        self.publisher = publisher
        self._now = now
        self._on_finished = on_finished
        self._sequence = 0
        self._settled_nodes: set[str] = set()
        self._node_count = len(machine.graph.nodes)

    @property
    def execution_id(self) -> str:
        """The id of the execution this supervisor runs."""
        return self.machine.execution_id

    async def run(self) -> None:
        """Run the execution until it reaches a final status.

        On cancellation (the engine is stopping) workers are cancelled with it and the
        execution stays as it was; the caller's handle reports the interruption.
        """
        machine = self.machine
        send, receive = anyio.create_memory_object_stream[NodeResult](math.inf)
        try:
            async with send, receive, anyio.create_task_group() as workers:
                now = self._now()
                if self.publisher.listening:
                    graph = machine.graph
                    self._publish(
                        events.ExecutionStarted,
                        now,
                        workflow_id=graph.workflow.id,
                        workflow_version=graph.workflow.version,
                        node_count=self._node_count,
                    )
                publisher = self.publisher
                machine.notices = publisher.listening
                self._carry_out(machine.start(now), workers, send)
                while not machine.finished:
                    result = await receive.receive()
                    machine.notices = publisher.listening
                    self._carry_out(machine.handle(result, self._now()), workers, send)
                workers.cancel_scope.cancel()
        except Exception as exc:  # a bug in prana: fail this execution, keep the engine
            logger.exception("supervisor of execution %s crashed", machine.execution_id)
            self._crash(exc)
        finally:
            # Also on cancellation: the handle learns the execution stopped unfinished.
            self.publisher.close()
            self._on_finished(machine.snapshot())

    def _crash(self, exc: BaseException) -> None:
        machine = self.machine
        machine.status = "failed"
        machine.error = ErrorInfo(code="internal_error", message=f"{type(exc).__name__}: {exc}")
        machine.finished_at = self._now()

    def _carry_out(
        self, commands: list[Command], workers: TaskGroup, send: MemoryObjectSendStream[NodeResult]
    ) -> None:
        listening = self.publisher.listening
        for command in commands:
            if isinstance(command, Dispatch):
                workers.start_soon(run_node, command, send.clone(), self._now)
                if listening:
                    run = command.run
                    self._publish(
                        events.NodeStarted,
                        self._now(),
                        node_key=run.node_key,
                        run_index=run.run_index,
                        execution_index=run.execution_index,
                    )
            elif isinstance(command, CancelRuns):
                workers.cancel_scope.cancel()
            elif listening:
                self._announce(command)

    def _announce(self, command: Command) -> None:
        now = self._now()
        if isinstance(command, RunFinished):
            run = command.run
            self._settled_nodes.add(run.node_key)
            kind = events.NodeCompleted if run.status == "completed" else events.NodeFailed
            self._publish(kind, now, node_key=run.node_key, run=run, progress=self._progress())
        elif isinstance(command, NodeSkipped):
            self._settled_nodes.add(command.node_key)
            self._publish(
                events.NodeSkipped, now, node_key=command.node_key, progress=self._progress()
            )
        elif isinstance(command, ExecutionFinished):
            if command.status == "completed":
                self._publish(events.ExecutionCompleted, now)
            else:
                self._publish(
                    events.ExecutionFailed, now, error=self.machine.error, status=command.status
                )

    def _progress(self) -> float:
        return len(self._settled_nodes) / self._node_count if self._node_count else 1.0

    def _publish(self, kind: type[events.Event], now: float, **fields: object) -> None:
        self._sequence += 1
        event = kind(
            execution_id=self.machine.execution_id, sequence=self._sequence, time=now, **fields
        )
        self.publisher.publish(event)
