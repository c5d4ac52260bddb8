"""Control of an execution from outside: cancel, pause, unpause, retry, time out (DESIGN §5.7).

Functions of the execution machine's state, with its rules: pure, synchronous, times
passed in. Each either changes the state and returns the commands to carry out, or
raises :class:`InvalidTransition` and changes nothing.

* ``cancel``: any execution that has not ended ends ``cancelled``; nodes running are
  cancelled, waiting nodes stop waiting, ``sync`` children are cancelled too.
* ``pause``: nothing new is dispatched; nodes running finish (their results are
  kept and routed), then the execution is ``paused``, saved and leaves memory.
  Waiting nodes may still be resumed while paused; timers that come due wait for
  the unpause, and fire then.
* ``unpause``: a paused execution carries on where it stopped.
* ``retry``: a failed execution runs its failed node again as a new attempt (same
  run index, so the same idempotency key), along with the nodes the failure cut
  short; completed nodes are kept.
* ``time_out``: past ``settings.timeout`` the execution ends ``timed_out`` like a
  cancel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

from ._commands import CancelChildren, CancelRuns, Command
from ._errors import InvalidTransition
from ._flow import DONE, RUNNING, SUSPENDED
from ._records import (
    Checkpoint,
    ErrorInfo,
    ExecutionStatus,
    NodeRun,
    StoredExecution,
    waiting_run,
)
from ._waiting import ENDED_HOW, end_wait, next_attempt, retry_now

if TYPE_CHECKING:
    from ._machine import ExecutionMachine


ControlAction = Literal["cancel", "pause", "unpause", "retry"]
# From which statuses each request is legal.
ALLOWED: dict[ControlAction, tuple[ExecutionStatus, ...]] = {
    "cancel": ("pending", "running", "suspended", "paused"),
    "pause": ("running", "suspended"),
    "unpause": ("paused",),
    "retry": ("failed",),
}
_WHAT: dict[ControlAction, str] = {
    "cancel": "only an execution that has not ended can be cancelled",
    "pause": "only a running or waiting execution can be paused",
    "unpause": "only a paused execution can be unpaused",
    "retry": "only a failed execution can be retried",
}


def check_allowed(action: ControlAction, status: ExecutionStatus, execution_id: str) -> None:
    """Raise :class:`InvalidTransition` unless ``action`` is legal from ``status``."""
    if status not in ALLOWED[action]:
        raise InvalidTransition(f"execution {execution_id} is {status}; {_WHAT[action]}")


def stop(machine: ExecutionMachine, status: ExecutionStatus, error: ErrorInfo) -> None:
    """End the execution with ``status``: runs in flight and waiting are cancelled.

    The routing state is left as it is (ready nodes stay on the stack), so a failed
    execution can be retried from where it stopped.
    """
    machine.status = status
    machine.error = error
    machine._pausing = False
    # Runs in flight, waiting, and in flight when the execution was last saved (a
    # restored execution whose runs were not dispatched again yet).
    stopped = sorted([*machine._running, *machine.waits, *machine._redispatch])
    children: list[str] = []
    for execution_index in stopped:
        machine._running.pop(execution_index, None)
        machine._redispatch.pop(execution_index, None)
        suspension = machine.waits.remove(execution_index)
        if suspension is not None and suspension.child_execution_id is not None:
            children.append(suspension.child_execution_id)
        cancelled = attrs.evolve(machine.trail[execution_index], status="cancelled")
        machine.trail.record(cancelled)
        machine.journal.run_ended(machine._commands, machine._now, cancelled)
    reason = f"parent execution {machine.execution_id} {ENDED_HOW.get(status, status)}"
    if stopped:
        machine._commands.append(CancelRuns(execution_indexes=tuple(stopped), reason=reason))
    if children:
        machine._commands.append(CancelChildren(execution_ids=tuple(children), reason=reason))


def cancel(machine: ExecutionMachine, reason: str | None, now: float) -> list[Command]:
    """End the execution ``cancelled`` with ``reason``."""
    check_allowed("cancel", machine.status, machine.execution_id)
    machine._now = now
    if machine.started_at is None:
        machine.started_at = now
    stop(machine, "cancelled", ErrorInfo(code="cancelled", message=reason or "cancelled"))
    return machine._finish_event(now)


def pause(machine: ExecutionMachine, now: float) -> list[Command]:
    """Stop dispatching; the execution is paused once its running nodes finish."""
    if machine._pausing:
        raise InvalidTransition(f"execution {machine.execution_id} is being paused already")
    check_allowed("pause", machine.status, machine.execution_id)
    machine._pausing = True
    machine.status = "running"
    return machine._finish_event(now)


def unpause(machine: ExecutionMachine, now: float) -> list[Command]:
    """Carry a paused execution on: what became ready runs, due timers fire, and runs
    that were cut short when it was paused (its engine was gone) run again."""
    check_allowed("unpause", machine.status, machine.execution_id)
    machine.status = "running"
    commands: list[Command] = []
    machine.journal.resumed(commands, now, "unpause")
    machine._dispatch_again()
    for suspension in machine.suspensions:
        if suspension.wake_at is None or suspension.wake_at > now:
            continue
        if suspension.kind == "retry":
            commands += retry_now(machine, suspension, now)
        else:
            port, data = suspension.wake_port, suspension.wake_data
            commands += end_wait(machine, suspension, port, data, now)
        if machine.finished:
            return commands
    return commands + machine._finish_event(now)


def retry(machine: ExecutionMachine, now: float) -> list[Command]:
    """Run a failed execution's failed node again, as its next attempt, with the
    nodes the failure cut short."""
    check_allowed("retry", machine.status, machine.execution_id)
    failed = _failed_run(machine)
    cut_short_keys = {
        machine._nodes[index].key
        for index, state in enumerate(machine._state)
        if state in (RUNNING, SUSPENDED)
    }
    if failed is None and not cut_short_keys:
        raise InvalidTransition(
            f"execution {machine.execution_id} failed before any node did "
            f"({machine.error.message if machine.error else 'no error recorded'}); "
            "there is no node to run again: start a new execution"
        )
    machine._now = now
    machine.status = "running"
    machine.error = None
    machine.finished_at = None
    commands: list[Command] = []
    machine.journal.resumed(commands, now, "retry")
    cut_short = []
    for run in machine.trail.newest_first():  # each such node's latest attempt
        if run.node_key in cut_short_keys and run.status != "retried":
            cut_short_keys.discard(run.node_key)
            cut_short.append(run.execution_index)
    again = {*cut_short} if failed is None else {failed.execution_index, *cut_short}
    for execution_index in sorted(again):
        _run_again(machine, machine.trail[execution_index])
    return commands + machine._finish_event(now)


def time_out(machine: ExecutionMachine, now: float) -> list[Command]:
    """End the execution ``timed_out`` if its deadline has passed (else nothing)."""
    if machine.finished or machine.deadline is None or now < machine.deadline:
        return []
    machine._now = now
    timeout = machine.graph.workflow.settings.timeout or 0.0
    stop(
        machine,
        "timed_out",
        ErrorInfo(
            code="timed_out",
            message=f"execution {machine.execution_id} ran past its timeout "
            f"({timeout:g} s, settings.timeout) and was stopped",
            details={"timeout": timeout},
        ),
    )
    return machine._finish_event(now)


def _failed_run(machine: ExecutionMachine) -> NodeRun | None:
    """The run that failed the execution: the last failed run not routed on."""
    for run in machine.trail.newest_first():
        if run.status == "failed" and run.port is None:
            index = machine._index[run.node_key]
            if machine._state[index] == DONE:
                return run
    return None


def _run_again(machine: ExecutionMachine, run: NodeRun) -> None:
    index = machine._index[run.node_key]
    machine._dispatch(index, again=next_attempt(machine, index, run, run.attempt + 1))


def unrestorable_checkpoint(
    stored: StoredExecution, status: ExecutionStatus, error: ErrorInfo, now: float
) -> Checkpoint:
    """A checkpoint that ends ``stored`` with ``status`` and ``error`` without
    restoring it (its workflow cannot be compiled any more, say), as :func:`stop`
    would: its running and waiting runs are cancelled, its routing state is kept.
    Retried once the workflow can be restored again, it runs the nodes cut short.

    It takes the execution from the store (unless the engine holds it already:
    running, claimed after its engine died), so it is applied only if nobody changed
    it since it was read.
    """
    paths = dict(stored.active_paths)
    waiting_inputs = paths.pop("waiting", {})
    paths.pop("pausing", None)
    cancelled = [
        NodeRun(
            node_key=node_key,
            run_index=run_index,
            execution_index=execution_index,
            status="cancelled",
            attempt=attempt,
            finished_at=now,
            inputs=tuple((str(port), int(source)) for port, source in inputs),
        )
        for execution_index, node_key, run_index, attempt, inputs in paths.pop("running", ())
    ]
    for suspension in stored.suspensions:
        inputs = waiting_inputs.get(str(suspension.execution_index), ())
        run = waiting_run(
            suspension, stored.runs, tuple((str(port), int(source)) for port, source in inputs)
        )
        cancelled.append(attrs.evolve(run, status="cancelled", finished_at=now))
    return Checkpoint(
        execution_id=stored.id,
        kind="change" if stored.status == "running" else "take",
        workflow_id=stored.workflow_id,
        workflow_version=stored.workflow_version,
        workflow_hash=stored.workflow_hash,
        status=status,
        trigger=stored.trigger,
        input=stored.input,
        active_paths=paths,
        iteration_count=stored.iteration_count,
        error=error,
        started_at=stored.started_at if stored.started_at is not None else now,
        finished_at=now,
        runs=tuple(sorted(cancelled, key=lambda run: run.execution_index)),
        suspensions_removed=tuple(s.execution_index for s in stored.suspensions),
        parent_execution_id=stored.parent_execution_id,
        root_execution_id=stored.root_execution_id,
        mode=stored.mode,
        depth=stored.depth,
        deadline=stored.deadline,
        take_from=stored.status,
        revision=stored.revision,
    )
