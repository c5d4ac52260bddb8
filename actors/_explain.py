"""Why an execution is where it is, in words (``Engine.explain``).

An operator looking at an execution that does not move wants one answer: what it
waits for, until when, and what carries it on. Everything here is read from the
stored execution (its status, waits, owner and lease) and whether this engine runs it.
"""

from __future__ import annotations

import attrs

from prana._records import FINAL_STATUSES, Execution, NodeRun, StoredExecution, Suspension
from prana._time import iso_time


@attrs.frozen(kw_only=True)
class Explanation:
    """Why an execution is where it is: ``reasons`` in words, one per thing it waits
    for (or does); ``moving`` when an engine runs it now."""

    execution_id: str
    status: str
    moving: bool
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return "\n".join(self.reasons)


def explain(
    stored: StoredExecution,
    *,
    live: Execution | None,
    wall_clock: float,
    heartbeat: float,
    unable_here: str | None = None,
) -> Explanation:
    """Explain ``stored``; ``live`` is the execution as it is now when this engine
    runs it; ``unable_here`` why this engine could not carry it on (its workflow's
    actions missing here, say), if it could not. Leases are compared with
    ``wall_clock`` (they are in real time)."""
    reasons: list[str] = []
    moving = False
    execution = live if live is not None else stored.to_execution()
    status = execution.status
    suspensions = execution.suspensions
    runs = {run.execution_index: run for run in execution.node_runs}
    if status in FINAL_STATUSES and stored.finished_at is not None:
        ended = f"it ended {status} at {iso_time(stored.finished_at)}"
        if stored.error is not None:
            ended += f": {stored.error.message}"
        reasons.append(ended)
    elif live is not None:
        moving = True
        running = [run.node_key for run in runs.values() if run.status == "running"]
        nodes = f": {', '.join(running)} running now" if running else ""
        reasons.append(f"it is running in this engine{nodes}")
    elif status == "running":
        reasons.append(_owner(stored, wall_clock, heartbeat))
        moving = stored.lease_expires is not None and stored.lease_expires > wall_clock
    elif status == "paused":
        reasons.append(
            "it is paused: nothing new runs until it is unpaused (prana resume "
            f"{stored.id}, or POST /api/executions/{stored.id}/unpause)"
        )
    elif status == "pending":
        reasons.append("it has not started yet")
    elif status == "queued":
        reasons.append(_queued(stored, wall_clock, unable_here is None))
    if status not in FINAL_STATUSES:
        for suspension in suspensions:
            if not suspension.is_deadline:
                reasons.append(_wait(suspension, runs.get(suspension.execution_index)))
    if stored.request is not None and status not in FINAL_STATUSES:
        action = stored.request.get("action", "control")
        reasons.append(f"a {action} request waits for the engine that runs it to apply it")
    if stored.deadline is not None and status not in FINAL_STATUSES:
        reasons.append(f"it times out at {iso_time(stored.deadline)} (settings.timeout)")
    if unable_here is not None and status not in FINAL_STATUSES:
        reasons.append(
            f"this engine cannot carry it on ({unable_here}): an engine that can "
            "(one with the workflow's actions) has to"
        )
    return Explanation(execution_id=stored.id, status=status, moving=moving, reasons=tuple(reasons))


def _queued(stored: StoredExecution, now: float, able_here: bool) -> str:
    place = stored.queue
    if stored.owner is not None and (stored.lease_expires or 0.0) > now:
        return f"it is queued, and engine {stored.owner} is starting it"
    if place is None or place.key is None:
        if not able_here:
            return "it is queued: the next engine that can run it to look at the queue starts it"
        return "it is queued: the next engine to look at the queue starts it"
    return (
        f"it is queued until an execution with concurrency key {place.key!r} ends: at most "
        f"{place.limit} run at once (settings.concurrency_limit); priority {place.priority}"
    )


def _owner(stored: StoredExecution, now: float, heartbeat: float) -> str:
    owner, lease = stored.owner, stored.lease_expires
    if owner is not None and lease is not None and lease > now:
        return (
            f"it is running in engine {owner}, whose lease on it ends at {iso_time(lease)} "
            "(renewed while that engine is alive)"
        )
    carry_on = (
        f"an engine looking for abandoned executions takes it over within {heartbeat:g} s, "
        "or carry it on with 'prana resume ID'"
    )
    if owner is None or not lease:
        return f"no engine runs it now (its engine stopped or died): {carry_on}"
    return (
        f"its engine {owner} stopped renewing its lease at {iso_time(lease)} (it died or "
        f"is frozen): {carry_on}"
    )


def _wait(suspension: Suspension, run: NodeRun | None) -> str:
    node = f"node {suspension.node_key!r}"
    until = f" until {iso_time(suspension.wake_at)}" if suspension.wake_at is not None else ""
    if suspension.kind == "retry":
        attempt = f"attempt {run.attempt}" if run is not None else "its next attempt"
        return f"{node} failed and runs again ({attempt}) at {iso_time(suspension.wake_at or 0)}"
    if suspension.kind == "workflow":
        return f"{node} waits for its child execution {suspension.child_execution_id} to end{until}"
    if suspension.token is not None:
        then = f" (then it goes on through its {suspension.wake_port!r} port)" if until else ""
        return (
            f"{node} waits for data{until}{then}: answer it with token {suspension.token} "
            f"(POST /api/resume/{suspension.token}, or prana resume {suspension.token})"
        )
    if suspension.wake_at is not None:
        return f"{node} waits for its timer, due at {iso_time(suspension.wake_at)}"
    return f"{node} waits to be resumed (prana resume ID --node {suspension.node_key})"
