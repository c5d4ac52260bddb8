"""Nodes that wait: for data, for a deadline, or to be tried again (DESIGN §5.3, §5.5).

Functions of the execution machine's state, split from :mod:`prana._machine` to keep
it readable; the same rules hold: pure, synchronous, no clock reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._commands import CancelChildren, Command
from ._errors import InvalidTransition
from ._flow import SUSPENDED
from ._records import ChildOutcome, ErrorInfo, NodeResult, NodeRun, Suspension
from ._retry import DURABLE_BACKOFF
from ._time import iso_time

if TYPE_CHECKING:
    from ._machine import ExecutionMachine


class WaitTimedOut(InvalidTransition):
    """A resume came for a wait whose timeout has passed: it is refused, and the wait
    ends through its timeout (``execution_index`` says which wait), as its timer
    would end it."""

    def __init__(self, message: str, *, execution_index: int) -> None:
        super().__init__(message)
        self.execution_index = execution_index


# How an execution that did not complete ended, in words.
ENDED_HOW = {"failed": "failed", "cancelled": "was cancelled", "timed_out": "timed out"}
# Waits that only the engine ends: a retry's backoff, a child execution.
_NOT_RESUMABLE = ("retry", "workflow")


def resume_waiting(
    machine: ExecutionMachine,
    node_key: str | None,
    data: Any,
    now: float,
    answered: NodeResult | None = None,
) -> list[Command]:
    """Complete the waiting node ``node_key`` (or the only one) with ``data`` on its
    resume port, or as its action's resume step ``answered``; see
    :meth:`ExecutionMachine.resume`."""
    suspension = resumable(machine, node_key, now)
    if answered is not None:
        return answer_wait(machine, suspension, answered, now)
    if data is None and suspension.wake_at is not None and suspension.kind != "webhook":
        # A timer's wait, ended early without data: as the timer would end it.
        return end_wait(machine, suspension, suspension.wake_port, suspension.wake_data, now)
    return end_wait(machine, suspension, suspension.resume_port, data, now)


def resumable(machine: ExecutionMachine, node_key: str | None, now: float) -> Suspension:
    """The wait a resume of ``node_key`` (or of the only waiting node) would end.
    Raises :class:`InvalidTransition` (:class:`WaitTimedOut` if its time is up)."""
    if machine.status not in ("running", "suspended", "paused"):
        raise InvalidTransition(
            f"execution {machine.execution_id} is {machine.status}; only an execution with a "
            "waiting node can be resumed"
        )
    waiting = [
        s
        for s in machine.waits.in_order()
        if s.kind not in _NOT_RESUMABLE and (node_key is None or s.node_key == node_key)
    ]
    others = [s for s in machine.waits.in_order() if s.kind in _NOT_RESUMABLE]
    if not waiting and others and (node_key is None or node_key == others[0].node_key):
        what = (
            f"it waits for its child execution {others[0].child_execution_id} to end"
            if others[0].kind == "workflow"
            else "it waits to be tried again after a failure"
        )
        raise InvalidTransition(
            f"node {others[0].node_key!r} of execution {machine.execution_id} is not waiting "
            f"for data: {what}, and carries on by itself"
        )
    if not waiting:
        keys = ", ".join(s.node_key for s in machine.waits.in_order()) or "none"
        what = f"node {node_key!r} is not" if node_key else "no node is"
        raise InvalidTransition(
            f"{what} waiting in execution {machine.execution_id} (waiting: {keys})"
        )
    if len(waiting) > 1:
        keys = ", ".join(sorted(s.node_key for s in waiting))
        raise InvalidTransition(
            f"several nodes are waiting in execution {machine.execution_id} ({keys}); "
            "say which one to resume with node="
        )
    (suspension,) = waiting
    wake_at = suspension.wake_at
    if wake_at is not None and wake_at <= now and suspension.kind == "webhook":
        raise WaitTimedOut(
            f"the wait of node {suspension.node_key!r} in execution {machine.execution_id} "
            f"timed out (at {iso_time(wake_at)}) before this resume came; it "
            f"goes on through its {suspension.wake_port!r} port",
            execution_index=suspension.execution_index,
        )
    return suspension


def answer_wait(
    machine: ExecutionMachine, suspension: Suspension, answered: NodeResult, now: float
) -> list[Command]:
    """End a wait as its action's resume step made of the resume data (see
    ``Action.on_resume``): complete the run (on the resume port unless it names
    another), fail it (a resume step is not retried), or wait again."""
    index, run, waited = _stop_waiting(machine, suspension, now)
    result = attrs.evolve(
        answered,
        attempt=run.attempt,
        started_at=waited.started_at,
        finished_at=now,
        duration_ms=waited.duration_ms,
    )
    take_result(machine, index, run, result, suspension.resume_port, retry_with=None)
    return machine._finish_event(now)


def take_result(
    machine: ExecutionMachine,
    index: int,
    run: NodeRun,
    result: NodeResult,
    default_port: str,
    *,
    retry_with: NodeResult | None,
) -> None:
    """Apply what a run came to: it failed (``retry_with`` the result its retries
    count from, if they apply), waits, or completes on the port it names, else
    ``default_port``."""
    if result.error is not None:
        machine._fail_run(index, run, result.error, retry_with)
    elif result.suspend is not None:
        suspend_run(machine, index, run, result)
    else:
        port = result.port or default_port
        error = machine._check_port(machine._nodes[index], port, run)
        if error is not None:
            machine._fail_run(index, run, error, retry_with)
        else:
            machine._complete_run(index, run, port, result)


def next_attempt(machine: ExecutionMachine, index: int, run: NodeRun, attempt: int) -> NodeRun:
    """A new attempt of ``run`` (same run index and inputs), recorded in place of it
    as the node's run; the caller dispatches or suspends it."""
    again = NodeRun(
        node_key=run.node_key,
        run_index=run.run_index,
        execution_index=machine.trail.new_index(),
        status="running",
        attempt=attempt,
        inputs=run.inputs,
    )
    machine.trail.put(again)
    runs = machine._entry_runs.get(index)
    if runs is not None:
        runs[runs.index(run.execution_index)] = again.execution_index
    return again


def retry(
    machine: ExecutionMachine,
    index: int,
    run: NodeRun,
    error: ErrorInfo,
    result: NodeResult,
    wait: float,
) -> None:
    """Record the failed attempt and start the next: at once, after a wait in
    memory, or (for a long wait) as a durable timer, the node waiting meanwhile."""
    node = machine._nodes[index]
    failed = run.ended("retried", result, error=error)
    machine.trail.record(failed)
    again = next_attempt(machine, index, run, result.attempt + 1)
    at = machine._now + wait
    machine.journal.retrying(machine._commands, machine._now, failed, again.attempt, at)
    if wait <= DURABLE_BACKOFF:
        machine._dispatch(index, again=again, not_before=at if wait > 0 else None)
        return
    suspension = Suspension(
        execution_id=machine.execution_id,
        node_key=node.key,
        run_index=again.run_index,
        execution_index=again.execution_index,
        kind="retry",
        wake_at=at,
        wake_port=node.default_port,
        resume_port=node.default_port,
    )
    machine.trail.put(attrs.evolve(again, status="suspended"))
    machine.set_state(index, SUSPENDED)
    machine.waits.add(suspension)


def wake_run(machine: ExecutionMachine, suspension: Suspension, now: float) -> list[Command]:
    """A waiting run's deadline passed: a durable retry runs its next attempt, a wait
    for a child times out, any other wait ends with its wake data on its wake port."""
    if suspension.kind == "retry":
        return retry_now(machine, suspension, now)
    if suspension.child_execution_id is not None:
        time_out_child(machine, suspension, now)
        return machine._finish_event(now)
    return end_wait(machine, suspension, suspension.wake_port, suspension.wake_data, now)


def retry_now(machine: ExecutionMachine, suspension: Suspension, now: float) -> list[Command]:
    machine._now = now
    machine.waits.remove(suspension.execution_index)
    machine.status = "running"
    run = attrs.evolve(machine.trail[suspension.execution_index], status="running")
    machine.trail.put(run)
    machine._dispatch(machine._index[run.node_key], again=run)
    return machine._finish_event(now)


def suspend_run(machine: ExecutionMachine, index: int, run: NodeRun, result: NodeResult) -> None:
    node = machine._nodes[index]
    request = result.suspend
    assert request is not None
    wake_port = request.wake_port or node.default_port
    resume_port = request.resume_port or node.default_port
    for port in (wake_port, resume_port):
        error = machine._check_port(node, port, run)
        if error is not None:
            machine._fail_run(index, run, error, result)
            return
    if (
        request.wake_at is not None
        and request.wake_at <= machine._now
        and request.child_execution_id is None
    ):
        # The deadline has passed already: no need to wait.
        woken = attrs.evolve(result, data=request.wake_data, suspend=None)
        machine._complete_run(index, run, wake_port, woken)
        return
    suspension = Suspension(
        execution_id=machine.execution_id,
        node_key=node.key,
        run_index=run.run_index,
        execution_index=run.execution_index,
        kind=request.kind,
        token=request.token,
        wake_at=request.wake_at,
        wake_port=wake_port,
        wake_data=request.wake_data,
        resume_port=resume_port,
        started_at=result.started_at,
        child_execution_id=request.child_execution_id,
        data=request.data,
        params=run.params,
    )
    waiting = attrs.evolve(run, status="suspended", started_at=result.started_at)
    machine.trail.put(waiting)
    machine.set_state(index, SUSPENDED)
    machine.waits.add(suspension)
    machine.journal.node_suspended(machine._commands, machine._now, suspension)
    if request.child_execution_id is not None:
        outcome = machine.waits.take_early(request.child_execution_id)
        if outcome is not None:  # the child ended before its parent heard it started
            settle_child(machine, suspension, outcome, machine._now)
        elif request.wake_at is not None and request.wake_at <= machine._now:
            time_out_child(machine, suspension, machine._now)  # its timeout passed already


def end_wait(
    machine: ExecutionMachine,
    suspension: Suspension,
    port: str,
    data: Any,
    now: float,
    *,
    finish: bool = True,
) -> list[Command]:
    """Complete a waiting run with ``data`` on ``port``. A paused execution stays
    paused: the data is routed, and what it makes ready runs once unpaused."""
    index, run, waited = _stop_waiting(machine, suspension, now)
    result = attrs.evolve(waited, data=data, port=port)
    machine._complete_run(index, run, port, result)
    return machine._finish_event(now) if finish else []


def settle_child(
    machine: ExecutionMachine, suspension: Suspension, outcome: ChildOutcome, now: float
) -> None:
    """End the wait of ``suspension`` with the child's outcome (no event finishing)."""
    if outcome.status == "completed":
        end_wait(machine, suspension, suspension.resume_port, outcome.output, now, finish=False)
        return
    index, run, waited = _stop_waiting(machine, suspension, now)
    error = ErrorInfo(
        code=f"child_{outcome.status}",
        message=f"child execution {outcome.child_execution_id} {_ended_how(outcome)}",
        details={
            "child_execution_id": outcome.child_execution_id,
            "status": outcome.status,
            "error": outcome.error.to_dict() if outcome.error is not None else None,
        },
    )
    machine._fail_run(index, run, error, attrs.evolve(waited, error=error))


def time_out_child(machine: ExecutionMachine, suspension: Suspension, now: float) -> None:
    """The node's ``timeout`` passed while it waited for its ``sync`` child: the
    child is cancelled and the node fails with ``timeout`` (no event finishing)."""
    index, run, waited = _stop_waiting(machine, suspension, now)
    node = machine._nodes[index]
    child_id = suspension.child_execution_id
    assert child_id is not None
    timeout = node.timeout or 0.0
    error = ErrorInfo(
        code="timeout",
        message=f"node {node.key!r} waited longer than its timeout ({timeout:g} s) for "
        f"child execution {child_id}, which was cancelled",
        details={"timeout": timeout, "child_execution_id": child_id},
    )
    machine._commands.append(
        CancelChildren(
            execution_ids=(child_id,),
            reason=f"its parent's node {node.key!r} timed out after {timeout:g} s",
        )
    )
    machine._fail_run(index, run, error, attrs.evolve(waited, error=error))


def _stop_waiting(
    machine: ExecutionMachine, suspension: Suspension, now: float
) -> tuple[int, NodeRun, NodeResult]:
    """Remove ``suspension``; return its node's index, its run, and a result for the
    run (no data yet) timed from when the wait began."""
    machine._now = now
    machine.waits.remove(suspension.execution_index)
    if machine.status == "suspended":
        machine.status = "running"
    run = machine.trail[suspension.execution_index]
    started = suspension.started_at if suspension.started_at is not None else now
    result = NodeResult(
        node_key=run.node_key,
        run_index=run.run_index,
        execution_index=run.execution_index,
        attempt=run.attempt,
        started_at=started,
        finished_at=now,
        duration_ms=max(0.0, (now - started) * 1000.0),
    )
    return machine._index[run.node_key], run, result


def _ended_how(outcome: ChildOutcome) -> str:
    text = ENDED_HOW.get(outcome.status, outcome.status)
    if outcome.error is not None:
        text += f": {outcome.error.message}"
    return text
