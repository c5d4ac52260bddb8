"""The Store protocol: where executions are kept (DESIGN §8).

Supervisors never talk to a store directly: they hand checkpoints to the engine's
checkpoint writer, which commits many at once (group commit). A store keeps and
returns records and enforces ownership (leases); it decides nothing about what a
workflow does: what a checkpoint holds, and how it is applied (its kind), is
decided by the core.

Every method is async. How a backend does its I/O (on the event loop's thread, or on
worker threads) is its own choice, written at the top of its module; callers see no
difference.

Ownership: an execution that is running belongs to one engine (``owner``) until its
lease expires. A checkpoint is applied only by the owner; a waiting (suspended) or
ended execution has no owner, and an engine takes one with a ``take`` checkpoint, or
one whose owner stopped with :meth:`Store.claim_orphans`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from prana._records import (
    Checkpoint,
    ExecutionStatus,
    StoredExecution,
    Suspension,
)
from prana._wanted import RunsSelector

from ._engines import EngineBeat


@attrs.frozen(kw_only=True)
class StoredWorkflow:
    """A workflow definition as stored: content-addressed by its hash."""

    hash: str
    id: str
    version: int
    definition: Mapping[str, Any]
    created_at: float


@attrs.frozen(kw_only=True)
class ScheduleState:
    """Where a schedule trigger stands: when it fires next, and the time of a firing
    claimed but perhaps not yet started (``None`` once its execution is saved)."""

    next_at: float
    pending_at: float | None = None
    spec: str = ""  # the cron expression and timezone it follows
    paused: bool = False  # its times pass without starting anything


@attrs.frozen
class ScheduleRow:
    """A schedule trigger as the store keeps it: which, and where it stands."""

    workflow_id: str
    trigger: str
    state: ScheduleState


@runtime_checkable
class Store(Protocol):
    """A place to keep executions: :class:`MemoryStore` or :class:`SQLiteStore`.

    Every method raises :class:`prana.StoreError` when the store cannot do its job.
    """

    #: How many :meth:`commit` calls may run at once (each its own transaction): 1
    #: for a store with one writer (SQLite). The engine never has two checkpoints of
    #: one execution in flight, so concurrent commits touch different executions.
    commits_at_once: int
    #: Whether :meth:`commit` does its work on threads of its own (PostgreSQL), not
    #: on the event loop's (SQLite's small commits): waiting for one is not work on
    #: the loop, so the engine lets other executions step meanwhile and puts more
    #: checkpoints in one commit.
    commits_off_the_loop: bool

    async def open(self) -> None:
        """Make the store ready (create or check its schema). Raises StoreError and
        changes nothing if the store is not one prana can use safely."""
        ...

    async def listen(self, heard: Callable[[str], None]) -> None:
        """Call ``heard(topic)`` whenever another process says there may be work for
        this one, until cancelled: ``"queue"`` (an execution was queued, or one that
        held a place in the queue ended) or ``"control"`` (a control request was left
        for an execution), and ``"listening"`` once it hears (and again after it
        lost the connection): what was said before it could hear is looked at then. A
        store whose processes cannot tell each other returns at once: engines then
        look now and then. Raises :class:`StoreError` if it stops
        hearing (the connection was lost)."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds open."""
        ...

    async def maintain(self) -> None:
        """Keep the store in shape while an engine uses it (the SQLite store
        checkpoints its WAL), until cancelled; an engine runs it in its task group."""
        ...

    async def commit(
        self, checkpoints: Sequence[Checkpoint], *, owner: str, lease_expires: float, now: float
    ) -> set[str]:
        """Apply every checkpoint in one transaction, all or none.

        Each is applied as its ``kind`` says (see :class:`prana.Checkpoint`): a
        running execution is owned by ``owner`` until ``lease_expires``, a waiting or
        ended one is released; a ``step`` leaves the lease as it was (:meth:`renew`
        extends it). Checkpoints of executions that ``owner`` does not own (or, for a
        ``take``, cannot take) are not applied; their ids are returned.
        """
        ...

    async def save_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a workflow definition (once per hash)."""
        ...

    async def keep_workflow(self, workflow: StoredWorkflow) -> None:
        """Keep a definition (once per hash) as the one every engine on the store
        serves for its id, in place of any kept before."""
        ...

    async def kept_workflows(self) -> list[StoredWorkflow]:
        """The definitions kept to be served, by id."""
        ...

    async def forget_kept_workflow(self, workflow_id: str) -> bool:
        """Serve ``workflow_id`` no more (its definitions stay, for its executions);
        false if none was kept."""
        ...

    async def load_workflow(self, workflow_hash: str) -> StoredWorkflow | None:
        """The definition with this hash, or ``None``."""
        ...

    async def load_execution(
        self, execution_id: str, *, wanted: RunsSelector | None = None
    ) -> StoredExecution | None:
        """Everything kept of an execution, or ``None`` if unknown. With ``wanted``,
        of its runs only those ``wanted`` asks for once told the rest (all of them if
        it says ``None``), read as one state with it; the execution then says
        ``all_runs=False``."""
        ...

    async def execution_status(self, execution_id: str) -> ExecutionStatus | None:
        """An execution's status as saved, or ``None`` if unknown: what
        :meth:`load_execution` would say of it, without reading its audit trail."""
        ...

    async def execution_revision(self, execution_id: str) -> tuple[ExecutionStatus, int] | None:
        """An execution's status and revision as saved, or ``None`` if unknown. The
        revision grows at each change of the execution's row (its status, a take
        from the store): an execution that is not running and shows the same pair
        as before is the same as before, found without reading its audit trail."""
        ...

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
        """Executions (without their audit trails), newest first (by start time, then
        id), filtered: started at or after ``started_after``, before
        ``started_before``; ``older_than`` (the start time and id of the last one of
        the previous page) gives the next page."""
        ...

    async def count_executions(
        self, *, workflow_id: str | None = None
    ) -> dict[ExecutionStatus, int]:
        """How many executions have each status (of one workflow, or all); statuses
        no execution has are left out."""
        ...

    async def find_token(self, token: str) -> Suspension | None:
        """The waiting node that this resume token belongs to, or ``None``."""
        ...

    async def timers(
        self,
        *,
        before: float | None = None,
        after: tuple[float, str, int] | None = None,
        limit: int | None = None,
    ) -> list[Suspension]:
        """Waiting nodes with a deadline (at or before ``before``, if given), and the
        deadlines of executions that have not ended (:meth:`Suspension.deadline`),
        earliest first: by time, then execution id, then execution index. With
        ``after`` (such a triple), only those that sort after it; with ``limit``, the
        first ``limit``. An engine holds only the earliest few hundred in memory, so
        a store should find them without reading the others (an index by time)."""
        ...

    async def finished_children(self) -> list[Suspension]:
        """Nodes waiting for a child execution (``workflow.execute``) that has ended."""
        ...

    async def abandoned_children(self) -> list[tuple[str, str, ExecutionStatus]]:
        """``sync`` children that have not ended though their parent has: (child id,
        parent id, parent status)."""
        ...

    async def find_workflow(
        self, workflow_id: str, version: int | None = None
    ) -> StoredWorkflow | None:
        """The stored definition of a workflow id: ``version``, or the highest version;
        ``None`` if there is none."""
        ...

    async def control_requests(self, owner: str) -> list[tuple[str, Mapping[str, Any]]]:
        """Requests (cancel, pause) left for executions that ``owner`` runs, by id."""
        ...

    async def request_control(self, execution_id: str, request: Mapping[str, Any]) -> bool:
        """Leave a request for the engine that runs an execution (it applies it and
        clears it with a checkpoint); false if the execution is not running."""
        ...

    async def arm_schedule(
        self, workflow_id: str, trigger: str, *, spec: str, first_at: float, replace: bool = True
    ) -> ScheduleState:
        """The state of a schedule trigger, created (firing first at ``first_at``) if
        it is new or, with ``replace``, if its ``spec`` (cron expression and timezone)
        changed; without ``replace``, a schedule kept with another spec is left as is
        (and returned with it)."""
        ...

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
        """Claim the firing due at ``due_at``: move the schedule on to ``next_at`` and
        note ``pending_at`` until its execution is saved. False if another engine
        claimed it first, or the schedule changed (its ``spec``, when given, is not
        the one kept)."""
        ...

    async def list_schedules(self) -> list[ScheduleRow]:
        """Every schedule trigger the store keeps, by workflow id and trigger."""
        ...

    async def pause_schedule(self, workflow_id: str, trigger: str, paused: bool) -> bool:
        """Pause a schedule trigger (its times pass without starting anything) or
        resume it; false if the store keeps no such schedule."""
        ...

    async def schedule_started(self, workflow_id: str, trigger: str, pending_at: float) -> None:
        """The execution of the firing at ``pending_at`` is saved: forget it."""
        ...

    async def claim_orphans(
        self,
        *,
        owner: str,
        lease_expires: float,
        now: float,
        dead_owners: Iterable[str] = (),
        execution_ids: Iterable[str] | None = None,
    ) -> list[str]:
        """Take every running execution (of ``execution_ids``, if given) whose lease
        has expired, or whose owner is known to be dead, for ``owner`` until
        ``lease_expires``; return their ids. Executions ``owner`` owns already count
        once their lease has expired (an engine whose supervisor stopped short)."""
        ...

    async def claim_queued(
        self,
        *,
        owner: str,
        lease_expires: float,
        now: float,
        limit: int,
        skip: Collection[str] = (),
    ) -> list[str]:
        """Claim at most ``limit`` queued executions that may start now (but those in
        ``skip``: the engine cannot run them), for ``owner``
        until ``lease_expires`` (their status stays ``queued`` until the engine starts
        them with a ``take``); return their ids, in the order to start them. Which
        ones: see :mod:`prana.storage._queue`. Two claims never both take the last
        room of a concurrency key."""
        ...

    async def renew(
        self, execution_ids: Iterable[str], *, owner: str, lease_expires: float
    ) -> set[str]:
        """Extend (or with ``lease_expires=0``, release) the lease of executions
        ``owner`` runs; return the ids among ``execution_ids`` that ``owner`` owns
        (the others were taken by another engine, or are no longer running)."""
        ...

    async def beat(self, owner: str, *, now: float, stale_after: float) -> EngineBeat:
        """Note that the engine ``owner`` is alive at ``now`` (one row per engine), and
        lead for ``stale_after`` seconds if no other engine leads; return whether it
        leads, the engines alive and those gone (no beat for ``stale_after`` seconds).
        See :mod:`prana.storage._engines`."""
        ...

    async def leave(self, owner: str) -> None:
        """Forget the engine ``owner`` (it stops): its lead is free at once."""
        ...
