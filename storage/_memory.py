"""The in-memory store: for tests and for engines that need no durability.

It keeps exactly what the SQLite store keeps, with the same ownership rules, so an
engine behaves the same on both; nothing survives the process.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import anyio
import attrs

from prana._records import (
    FINAL_STATUSES,
    Checkpoint,
    ExecutionStatus,
    NodeRun,
    StoredExecution,
    Suspension,
)
from prana._wanted import RunsSelector

from ._engines import FORGET_AFTER, EngineBeat, beat_of
from ._protocol import ScheduleRow, ScheduleState, StoredWorkflow
from ._queue import choose


@attrs.define
class _Kept:
    execution: StoredExecution
    runs: dict[int, NodeRun] = attrs.field(factory=dict)
    suspensions: dict[int, Suspension] = attrs.field(factory=dict)
    paths_blocks: dict[int, Any] = attrs.field(factory=dict)


class MemoryStore:
    """Keeps executions in dicts, with the ownership rules of every store."""

    commits_at_once = 1
    commits_off_the_loop = False

    def __init__(self) -> None:
        self._workflows: dict[str, StoredWorkflow] = {}
        self._kept: dict[str, str] = {}  # workflow id to the hash of its kept definition
        self._executions: dict[str, _Kept] = {}
        self._schedules: dict[tuple[str, str], tuple[str, ScheduleState]] = {}
        # Each engine's last beat and until when it leads (see _engines).
        self._engines: dict[str, tuple[float, float | None]] = {}

    async def open(self) -> None:
        """Nothing to prepare."""

    async def listen(self, heard: Callable[[str], None]) -> None:
        """Nothing to hear (one engine only)."""

    async def aclose(self) -> None:
        """Nothing to release."""

    async def commit(
        self, checkpoints: Sequence[Checkpoint], *, owner: str, lease_expires: float, now: float
    ) -> set[str]:
        """Apply checkpoints owned by ``owner``; return the ids of the others."""
        lost: set[str] = set()
        for checkpoint in checkpoints:
            kept = self._executions.get(checkpoint.execution_id)
            if kept is None:
                if checkpoint.kind != "start":
                    lost.add(checkpoint.execution_id)
                    continue
            elif checkpoint.kind == "start":  # started already, by this engine or another
                lost.add(checkpoint.execution_id)
                continue
            elif checkpoint.kind == "take":
                execution = kept.execution
                free = execution.owner in (None, owner) or (execution.lease_expires or 0.0) <= now
                stale = execution.revision != checkpoint.revision
                if execution.status != checkpoint.take_from or not free or stale:
                    lost.add(checkpoint.execution_id)
                    continue
            elif kept.execution.owner != owner:
                lost.add(checkpoint.execution_id)
                continue
            self._apply(kept, checkpoint, owner, lease_expires, now)
        return lost

    async def maintain(self) -> None:
        """Nothing to keep in shape: sleeps until cancelled."""
        await anyio.sleep_forever()

    def _apply(
        self,
        kept: _Kept | None,
        checkpoint: Checkpoint,
        owner: str,
        lease_expires: float,
        now: float,
    ) -> None:
        running = checkpoint.status == "running"
        previous = kept.execution if kept is not None else None
        if previous is not None and checkpoint.kind == "step":  # the row stays as it was
            lease, revision = previous.lease_expires, previous.revision
        else:
            lease = lease_expires if running else None
            revision = previous.revision + 1 if previous is not None else 1
        execution = StoredExecution(
            id=checkpoint.execution_id,
            workflow_id=checkpoint.workflow_id,
            workflow_version=checkpoint.workflow_version,
            workflow_hash=checkpoint.workflow_hash,
            trigger=checkpoint.trigger,
            status=checkpoint.status,
            input=previous.input if previous is not None else checkpoint.input,
            vars=checkpoint.vars
            if checkpoint.vars is not None
            else (previous.vars if previous else {}),
            node_contexts=_contexts(previous, checkpoint),
            active_paths=checkpoint.active_paths,
            iteration_count=checkpoint.iteration_count,
            error=checkpoint.error,
            started_at=checkpoint.started_at,
            finished_at=checkpoint.finished_at,
            updated_at=now,
            parent_execution_id=checkpoint.parent_execution_id,
            root_execution_id=checkpoint.root_execution_id,
            owner=owner if running else None,
            lease_expires=lease,
            mode=checkpoint.mode,
            depth=checkpoint.depth,
            deadline=checkpoint.deadline,
            request=None
            if previous is None or checkpoint.kind == "take" or checkpoint.clear_request
            else previous.request,
            revision=revision,
            queue=previous.queue if previous is not None else checkpoint.queue,
        )
        if kept is None:
            kept = self._executions[checkpoint.execution_id] = _Kept(execution=execution)
        kept.execution = execution
        for run in checkpoint.runs:
            kept.runs[run.execution_index] = run
        for number, block in checkpoint.paths_blocks.items():
            if block is None:
                kept.paths_blocks.pop(number, None)
            else:
                kept.paths_blocks[number] = block
        for index in checkpoint.suspensions_removed:
            kept.suspensions.pop(index, None)
        for suspension in checkpoint.suspensions_added:
            kept.suspensions[suspension.execution_index] = suspension

    async def save_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a definition, once per hash."""
        self._workflows.setdefault(workflow.hash, copy.deepcopy(workflow))

    async def keep_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a definition as the one served for its id."""
        await self.save_workflow(workflow)
        self._kept[workflow.id] = workflow.hash

    async def kept_workflows(self) -> list[StoredWorkflow]:
        """The definitions kept to be served, by id."""
        return [copy.deepcopy(self._workflows[self._kept[id]]) for id in sorted(self._kept)]

    async def forget_kept_workflow(self, workflow_id: str) -> bool:
        """Serve ``workflow_id`` no more; false if none was kept."""
        return self._kept.pop(workflow_id, None) is not None

    async def load_workflow(self, workflow_hash: str) -> StoredWorkflow | None:
        """The definition with this hash, or ``None``."""
        found = self._workflows.get(workflow_hash)
        return copy.deepcopy(found) if found is not None else None

    async def execution_status(self, execution_id: str) -> ExecutionStatus | None:
        """An execution's status as saved, or ``None``."""
        kept = self._executions.get(execution_id)
        return None if kept is None else kept.execution.status

    async def execution_revision(self, execution_id: str) -> tuple[ExecutionStatus, int] | None:
        """An execution's status and revision as saved, or ``None``."""
        kept = self._executions.get(execution_id)
        return None if kept is None else (kept.execution.status, kept.execution.revision)

    async def load_execution(
        self, execution_id: str, *, wanted: RunsSelector | None = None
    ) -> StoredExecution | None:
        """Everything kept of an execution (with ``wanted``, of its runs only those it
        asks for), or ``None``."""
        kept = self._executions.get(execution_id)
        if kept is None:
            return None
        stored = attrs.evolve(
            kept.execution,
            suspensions=tuple(kept.suspensions[index] for index in sorted(kept.suspensions)),
            paths_blocks=kept.paths_blocks,
        )
        selection = None if wanted is None else wanted(stored)
        if selection is None:
            runs = tuple(kept.runs[index] for index in sorted(kept.runs))
            return copy.deepcopy(attrs.evolve(stored, runs=runs))
        runs = tuple(selection.pick(kept.runs))
        return copy.deepcopy(attrs.evolve(stored, runs=runs, all_runs=False))

    async def count_executions(
        self, *, workflow_id: str | None = None
    ) -> dict[ExecutionStatus, int]:
        """How many executions have each status."""
        counts: dict[ExecutionStatus, int] = {}
        for kept in self._executions.values():
            execution = kept.execution
            if workflow_id is None or execution.workflow_id == workflow_id:
                counts[execution.status] = counts.get(execution.status, 0) + 1
        return counts

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
        started_after: float | None = None,
        started_before: float | None = None,
        older_than: tuple[float, str] | None = None,
    ) -> list[StoredExecution]:
        """Executions without their audit trails, newest first, filtered, a page at a
        time (see :meth:`Store.list_executions`)."""

        def chosen(execution: StoredExecution) -> bool:
            started = execution.started_at or 0.0
            return (
                (status is None or execution.status == status)
                and (workflow_id is None or execution.workflow_id == workflow_id)
                and (started_after is None or started >= started_after)
                and (started_before is None or started < started_before)
                and (older_than is None or (started, execution.id) < older_than)
            )

        found = [kept.execution for kept in self._executions.values() if chosen(kept.execution)]
        found.sort(key=lambda execution: (execution.started_at or 0.0, execution.id), reverse=True)
        return [
            attrs.evolve(
                copy.deepcopy(execution),
                suspensions=tuple(self._executions[execution.id].suspensions.values()),
            )
            for execution in found[:limit]
        ]

    async def find_token(self, token: str) -> Suspension | None:
        """The waiting node with this resume token, or ``None``."""
        for kept in self._executions.values():
            for suspension in kept.suspensions.values():
                if suspension.token == token:
                    return suspension
        return None

    async def timers(
        self,
        *,
        before: float | None = None,
        after: tuple[float, str, int] | None = None,
        limit: int | None = None,
    ) -> list[Suspension]:
        """Waiting nodes with a deadline, and the deadlines of executions that have
        not ended, earliest first (see :meth:`prana.storage.Store.timers`)."""
        latest = math.inf if before is None else before
        found = [
            suspension
            for kept in self._executions.values()
            for suspension in kept.suspensions.values()
            if suspension.wake_at is not None and suspension.wake_at <= latest
        ]
        found += [
            Suspension.deadline(kept.execution.id, kept.execution.deadline)
            for kept in self._executions.values()
            if kept.execution.deadline is not None
            and kept.execution.deadline <= latest
            and kept.execution.status not in FINAL_STATUSES
        ]
        found.sort(
            key=lambda suspension: (
                suspension.wake_at or 0.0,
                suspension.execution_id,
                suspension.execution_index,
            )
        )
        if after is not None:
            found = [
                suspension
                for suspension in found
                if (suspension.wake_at or 0.0, suspension.execution_id, suspension.execution_index)
                > after
            ]
        return found if limit is None else found[:limit]

    async def finished_children(self) -> list[Suspension]:
        """Nodes waiting for a child execution that has ended."""
        found = []
        for kept in self._executions.values():
            for suspension in kept.suspensions.values():
                child = self._executions.get(suspension.child_execution_id or "")
                if child is not None and child.execution.status in FINAL_STATUSES:
                    found.append(suspension)
        return found

    async def abandoned_children(self) -> list[tuple[str, str, ExecutionStatus]]:
        """``sync`` children not ended whose parent has ended."""
        found = []
        for kept in self._executions.values():
            child = kept.execution
            if (
                child.mode != "sync"
                or child.status in FINAL_STATUSES
                or child.parent_execution_id is None
            ):
                continue
            parent = self._executions.get(child.parent_execution_id)
            if parent is not None and parent.execution.status in FINAL_STATUSES:
                found.append((child.id, parent.execution.id, parent.execution.status))
        return found

    async def find_workflow(
        self, workflow_id: str, version: int | None = None
    ) -> StoredWorkflow | None:
        """The stored definition of a workflow id: ``version``, or the highest version
        (the latest stored if several share it); ``None`` if there is none."""
        found = [
            workflow
            for workflow in self._workflows.values()
            if workflow.id == workflow_id and (version is None or workflow.version == version)
        ]
        if not found:
            return None
        return copy.deepcopy(
            max(found, key=lambda workflow: (workflow.version, workflow.created_at))
        )

    async def control_requests(self, owner: str) -> list[tuple[str, Mapping[str, Any]]]:
        """Requests (cancel, pause) left for executions that ``owner`` runs."""
        return [
            (kept.execution.id, copy.deepcopy(kept.execution.request))
            for kept in self._executions.values()
            if kept.execution.owner == owner and kept.execution.request is not None
        ]

    async def request_control(self, execution_id: str, request: Mapping[str, Any]) -> bool:
        """Leave a request for the engine running an execution; false if the execution
        is not running any more."""
        kept = self._executions.get(execution_id)
        if kept is None or kept.execution.status != "running":
            return False
        kept.execution = attrs.evolve(kept.execution, request=copy.deepcopy(dict(request)))
        return True

    async def arm_schedule(
        self, workflow_id: str, trigger: str, *, spec: str, first_at: float, replace: bool = True
    ) -> ScheduleState:
        """The state of a schedule trigger, made anew if it is new or (with
        ``replace``) changed."""
        kept = self._schedules.get((workflow_id, trigger))
        if kept is not None and (kept[0] == spec or not replace):
            return kept[1]
        pending_at = kept[1].pending_at if kept is not None else None
        paused = kept[1].paused if kept is not None else False
        state = ScheduleState(next_at=first_at, pending_at=pending_at, spec=spec, paused=paused)
        self._schedules[(workflow_id, trigger)] = (spec, state)
        return state

    async def advance_schedule(
        self,
        workflow_id: str,
        trigger: str,
        *,
        due_at: float,
        next_at: float,
        pending_at: float,
        spec: str | None = None,
    ) -> bool:
        """Claim the firing due at ``due_at``; false if another engine did (or the
        schedule follows another ``spec``)."""
        kept = self._schedules.get((workflow_id, trigger))
        if kept is None or kept[1].next_at != due_at or spec not in (None, kept[0]):
            return False
        self._schedules[(workflow_id, trigger)] = (
            kept[0],
            attrs.evolve(kept[1], next_at=next_at, pending_at=pending_at),
        )
        return True

    async def list_schedules(self) -> list[ScheduleRow]:
        """Every schedule trigger, by workflow id and trigger."""
        return [
            ScheduleRow(workflow_id=workflow_id, trigger=trigger, state=state)
            for (workflow_id, trigger), (_, state) in sorted(self._schedules.items())
        ]

    async def pause_schedule(self, workflow_id: str, trigger: str, paused: bool) -> bool:
        """Pause or resume a schedule trigger; false if there is none."""
        kept = self._schedules.get((workflow_id, trigger))
        if kept is None:
            return False
        self._schedules[(workflow_id, trigger)] = (kept[0], attrs.evolve(kept[1], paused=paused))
        return True

    async def schedule_started(self, workflow_id: str, trigger: str, pending_at: float) -> None:
        """Forget the pending firing at ``pending_at``: its execution is saved."""
        kept = self._schedules.get((workflow_id, trigger))
        if kept is not None and kept[1].pending_at == pending_at:
            self._schedules[(workflow_id, trigger)] = (
                kept[0],
                attrs.evolve(kept[1], pending_at=None),
            )

    async def claim_orphans(
        self,
        *,
        owner: str,
        lease_expires: float,
        now: float,
        dead_owners: Iterable[str] = (),
        execution_ids: Iterable[str] | None = None,
    ) -> list[str]:
        """Take running executions whose lease expired or whose owner is dead."""
        dead = set(dead_owners)
        only = None if execution_ids is None else set(execution_ids)
        taken = []
        for execution_id, kept in self._executions.items():
            execution = kept.execution
            if execution.status != "running" or (only is not None and execution_id not in only):
                continue
            expired = (execution.lease_expires or 0.0) <= now
            if execution.owner is None or execution.owner in dead or expired:
                kept.execution = attrs.evolve(execution, owner=owner, lease_expires=lease_expires)
                taken.append(execution_id)
        return sorted(taken)

    async def claim_queued(
        self,
        *,
        owner: str,
        lease_expires: float,
        now: float,
        limit: int,
        skip: Collection[str] = (),
    ) -> list[str]:
        """Claim queued executions that may start (see :mod:`._queue`)."""
        executions = [kept.execution for kept in self._executions.values()]
        taken = choose(executions, now, limit, skip)
        for execution_id in taken:
            kept = self._executions[execution_id]
            kept.execution = attrs.evolve(kept.execution, owner=owner, lease_expires=lease_expires)
        return taken

    async def renew(
        self, execution_ids: Iterable[str], *, owner: str, lease_expires: float
    ) -> set[str]:
        """Extend the leases ``owner`` holds; return the ids it holds."""
        held: set[str] = set()
        for execution_id in execution_ids:
            kept = self._executions.get(execution_id)
            if kept is not None and kept.execution.owner == owner:
                kept.execution = attrs.evolve(kept.execution, lease_expires=lease_expires)
                held.add(execution_id)
        return held

    async def beat(self, owner: str, *, now: float, stale_after: float) -> EngineBeat:
        """Note the engine's beat; lead if nobody else does (see :mod:`._engines`)."""
        engines = self._engines
        engines[owner] = (now, engines.get(owner, (now, None))[1])
        leads = not any(o != owner and (u or 0.0) > now for o, (_, u) in engines.items())
        if leads:
            engines[owner] = (now, now + stale_after)
        rows = sorted((o, at) for o, (at, _) in engines.items())
        for gone, at in rows:
            if at < now - FORGET_AFTER * stale_after:
                del engines[gone]
        return beat_of(owner, leads, rows, now, stale_after)

    async def leave(self, owner: str) -> None:
        """Forget the engine."""
        self._engines.pop(owner, None)


def _contexts(
    previous: StoredExecution | None, checkpoint: Checkpoint
) -> dict[str, Mapping[str, Any]]:
    """The node contexts kept, with the fields ``checkpoint`` changes and drops."""
    contexts = dict(previous.node_contexts) if previous is not None else {}
    for key in {*checkpoint.node_contexts, *checkpoint.node_context_drops}:
        fields = {**contexts.get(key, {}), **checkpoint.node_contexts.get(key, {})}
        for field in checkpoint.node_context_drops.get(key, ()):
            fields.pop(field, None)
        contexts[key] = fields
    return contexts
