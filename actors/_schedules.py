"""Schedule triggers: the cron side of the timer actor (DESIGN §7).

Each ``schedule.trigger`` of a workflow the engine serves has a row in the store
with the next time it fires. The timer actor wakes at that time; the engine claims
the firing in the store (one engine wins, however many serve the workflow), moves the
schedule on, and starts an execution whose id derives from the workflow, trigger and
time, so that starting it twice saves it once. The claim leaves a pending mark until
the execution is saved: an engine that starts after a crash between the two starts
it then. Times that passed while no engine ran fire once, for the latest of them.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

import attrs

from prana._cron import Cron
from prana._errors import PranaError
from prana._model import Workflow
from prana._triggers import iso_time, schedule_triggers, trigger_input
from prana.storage import ScheduleState, Store

from ._catalog import Catalog
from ._clock import Clock, new_execution_id

if TYPE_CHECKING:
    from ._live import LiveExecutions
    from ._supervisor import ExecutionSupervisor
    from ._timers import TimerActor

logger = logging.getLogger("prana.engine")


@attrs.frozen(kw_only=True)
class ScheduleInfo:
    """A schedule trigger as an operator sees it (:meth:`prana.Engine.schedules`):
    its workflow and trigger, its cron expression and timezone (``cron``), when it
    fires next, and whether it is paused (its times pass without starting anything)."""

    workflow_id: str
    trigger: str
    cron: str
    next_at: float
    paused: bool


@attrs.frozen
class ScheduleSlot:
    """A time a schedule trigger fires, as the timer actor keeps it."""

    workflow_id: str
    trigger: str
    wake_at: float

    @property
    def timer_key(self) -> tuple[str, int]:
        """What tells this timer from every other one."""
        return (f"schedule:{self.workflow_id}:{self.trigger}", round(self.wake_at * 1000))


def schedule_execution_id(workflow_id: str, trigger: str, at: float) -> str:
    """The id of the execution a schedule starts for time ``at``: the same in every
    engine. Like every execution id, 32 hex digits that sort by time."""
    digest = hashlib.blake2b(f"{workflow_id}\0{trigger}\0{at!r}".encode(), digest_size=10)
    return f"{int(at * 1000) & 0xFFFFFFFFFFFF:012x}{digest.hexdigest()}"


class Schedules:
    """The schedule triggers an engine runs."""

    def __init__(
        self,
        *,
        live: LiveExecutions,
        store: Store,
        catalog: Catalog,
        clock: Clock,
        timers: TimerActor,
    ) -> None:
        self._live = live
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._timers = timers
        self._armed: dict[tuple[str, str], tuple[Workflow, Cron]] = {}

    async def arm(self, workflow: Workflow) -> None:
        """Run ``workflow``'s schedule triggers (it is the version the engine serves)
        from where the store says they stand."""
        for key, cron in schedule_triggers(workflow, self._catalog.actions).items():
            self._armed[(workflow.id, key)] = (workflow, cron)
            state = await self._state(workflow.id, key, cron)
            if state.pending_at is not None:  # claimed before a crash: start it if unsaved
                await self._start(workflow.id, key, state.pending_at)
            self._add(ScheduleSlot(workflow.id, key, state.next_at))

    async def arm_quietly(self, workflow: Workflow) -> None:
        """:meth:`arm` for a workflow registered while the engine runs: a store that
        fails is logged, and does not stop the engine."""
        try:
            await self.arm(workflow)
        except PranaError as exc:
            logger.error("cannot run the schedules of workflow %s: %s", workflow.id, exc)

    def disarm(self, workflow_id: str) -> None:
        """Fire ``workflow_id``'s schedules no more (from this engine)."""
        for key in [key for key in self._armed if key[0] == workflow_id]:
            del self._armed[key]

    async def fire(self, slot: ScheduleSlot) -> None:
        """A schedule's time came: claim it, start its execution, arm the next."""
        armed = self._armed.get((slot.workflow_id, slot.trigger))
        if armed is None:
            return
        workflow, cron = armed
        now = self._clock.now()
        latest = cron.latest_due(slot.wake_at, now) or slot.wake_at
        next_at = cron.next_after(max(now, slot.wake_at))
        claimed = await self._store.advance_schedule(
            workflow.id,
            slot.trigger,
            due_at=slot.wake_at,
            next_at=next_at,
            pending_at=latest,
            spec=_spec(cron),
        )
        if not claimed:  # another engine fired it: follow the schedule as it stands now
            state = await self._state(workflow.id, slot.trigger, cron, replace=False)
            if state.spec != _spec(cron):
                # Another engine on this store serves another version of the workflow
                # (a deploy under way, say): it keeps the schedule, this engine stops.
                del self._armed[(workflow.id, slot.trigger)]
                logger.warning(
                    "schedule %s of workflow %s now follows %r, set by another engine on "
                    "this store; this engine (which has %r) no longer fires it",
                    slot.trigger,
                    workflow.id,
                    state.spec,
                    _spec(cron),
                )
                return
            self._add(ScheduleSlot(workflow.id, slot.trigger, state.next_at))
            return
        self._add(ScheduleSlot(workflow.id, slot.trigger, next_at))
        state = await self._state(workflow.id, slot.trigger, cron, replace=False)
        if state.paused:  # the time passes: nothing to start
            await self._store.schedule_started(workflow.id, slot.trigger, latest)
            logger.info(
                "schedule %s of %s is paused: its time %s passed without a start",
                slot.trigger,
                workflow.id,
                iso_time(latest),
            )
            return
        await self._start(workflow.id, slot.trigger, latest)

    async def _state(
        self, workflow_id: str, trigger: str, cron: Cron, *, replace: bool = True
    ) -> ScheduleState:
        return await self._store.arm_schedule(
            workflow_id,
            trigger,
            spec=_spec(cron),
            first_at=cron.next_after(self._clock.now()),
            replace=replace,
        )

    async def _start(self, workflow_id: str, trigger: str, at: float) -> None:
        store = self._store
        execution_id = schedule_execution_id(workflow_id, trigger, at)
        if await store.load_execution(execution_id) is None:
            workflow, _ = self._armed[(workflow_id, trigger)]
            graph = self._catalog.compile(workflow, trigger=trigger)
            input = trigger_input(graph, {"scheduled_at": iso_time(at)}, at)
            async with self._live.turn() as turn:
                supervisor = await self._live.start(graph, input, execution_id, turn)
            try:
                await supervisor.wait_saved()
            except PranaError:  # another engine started it first
                return
            logger.info(
                "schedule %s of %s started execution %s", trigger, workflow_id, execution_id
            )
        await store.schedule_started(workflow_id, trigger, at)

    async def fire_now(self, workflow: Workflow, trigger: str) -> ExecutionSupervisor:
        """Start an execution of a schedule trigger now, out of its times (which stay
        as they are); its ``trigger.scheduled_at`` is now."""
        if trigger not in schedule_triggers(workflow, self._catalog.actions):
            raise PranaError(
                f"{trigger!r} is not a schedule trigger of workflow {workflow.id!r}; its "
                f"schedules: {', '.join(schedule_triggers(workflow, self._catalog.actions))}"
            )
        now = self._clock.now()
        graph = self._catalog.compile(workflow, trigger=trigger)
        input = trigger_input(graph, {"scheduled_at": iso_time(now)}, now)
        async with self._live.turn() as turn:
            supervisor = await self._live.start(graph, input, new_execution_id(now), turn)
        await supervisor.wait_saved()
        return supervisor

    def _add(self, slot: ScheduleSlot) -> None:
        self._timers.add(slot)


def _spec(cron: Cron) -> str:
    """How the store tells schedules apart: the expression and its timezone."""
    return f"{cron.expression} {cron.timezone}"
