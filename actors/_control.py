"""Control of executions wherever they are: cancel, pause, unpause, retry (DESIGN §5.7).

An execution is in one of three places, and a request reaches it there:

* in memory here: its supervisor gets the request in its inbox and applies it
  between two steps;
* waiting in the store (suspended, paused, failed): this engine takes it (the
  taking is part of its next checkpoint, so two engines never both do) and applies
  the request;
* running in another engine: the request is left in the store; that engine picks
  it up (:func:`deliver_requests`, about once a second) and applies it, and this one
  follows the stored status until it has.

Whether a request is legal is the state machine's decision; an illegal one raises
:class:`InvalidTransition` and changes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.lowlevel

from prana._commands import Command
from prana._control import ControlAction as Action
from prana._control import check_allowed
from prana._errors import PranaError
from prana._machine import ExecutionMachine
from prana._records import Execution, StoredExecution

from ._children import reconcile
from ._supervision import ControlRequest, Lost, Stopped

if TYPE_CHECKING:
    from ._engine import Engine

logger = logging.getLogger("prana.engine")

# How often (seconds) an engine that left a request for another looks for its effect.
_FOLLOW_POLL = 0.05


async def control(
    engine: Engine, execution_id: str, action: Action, reason: str | None = None
) -> Execution:
    """Apply ``action`` to the execution wherever it is; return it once applied:
    cancelled or paused, or (unpause, retry) when it next waits or ends."""
    while True:
        supervisor = engine._live.get(execution_id)
        if supervisor is not None:
            status = supervisor.machine.status
            check_allowed(action, status, execution_id)
            if action in ("cancel", "pause") and status == "running":
                stopped = supervisor.stop_waiter()
                request = ControlRequest(action=action, reason=reason)
                supervisor.deliver(request)
                await request.done.wait()
                if isinstance(request.error, Stopped):
                    continue  # it left memory meanwhile: find it in the store
                if request.error is not None:
                    raise request.error
                return await supervisor.wait_stop(stopped)
            with contextlib.suppress(PranaError):  # leaving memory: wait until it has
                await supervisor.wait_stop()
            await anyio.lowlevel.checkpoint()
            continue
        stored = await engine._load(execution_id)
        check_allowed(action, stored.status, execution_id)
        if stored.status == "running":
            done = await _ask_owner(engine, stored, action, reason)
            if done is not None:
                return done
            continue
        machine = await engine._restore(stored)
        if execution_id in engine._live:
            continue  # taken meanwhile by another task of this engine
        first = _apply(machine, action, reason, engine.clock.now())
        machine.take_on_save = True
        taken = engine._launch(machine, functools.partial(_given, first))
        try:
            return await taken.wait_stop(taken.stop_waiter())
        except Lost:
            continue  # another engine took it first: look again


def _apply(
    machine: ExecutionMachine, action: Action, reason: str | None, now: float
) -> list[Command]:
    if action == "cancel":
        return machine.cancel(reason, now)
    if action == "pause":
        return machine.pause(now)
    if action == "unpause":
        return machine.unpause(now)
    return machine.retry(now)


def _given(commands: list[Command], now: float) -> list[Command]:
    return commands


async def _ask_owner(
    engine: Engine, stored: StoredExecution, action: Action, reason: str | None
) -> Execution | None:
    """Leave the request for the engine running the execution and follow it until
    applied; ``None`` if the execution changed meanwhile (look again)."""
    if action not in ("cancel", "pause"):
        return None
    store = engine._require_store()
    if not await store.request_control(stored.id, {"action": action, "reason": reason}):
        return None
    while True:
        await anyio.sleep(_FOLLOW_POLL)
        current = await engine._load(stored.id)
        if current.request is not None and current.status == "running":
            continue
        if action == "cancel" and current.status == "cancelled":
            return current.to_execution()
        if action == "pause" and current.status == "paused":
            return current.to_execution()
        if current.status == "running":
            continue  # pausing: its running nodes are finishing
        return None


async def pick_up_requests(engine: Engine) -> None:
    """Apply the cancel and pause requests other engines leave for executions
    running in ``engine``; hear of children that ended (with the heartbeat). Runs
    until cancelled."""
    interval = min(1.0, engine._heartbeat_interval)
    beats = max(1, round(engine._heartbeat_interval / interval))
    count = 0
    while True:
        await anyio.sleep(interval)
        try:
            await deliver_requests(engine)
            count += 1
            if engine._recover and count % beats == 0:
                await reconcile(engine)
        except PranaError as exc:
            logger.warning("could not look for requests and ended children: %s", exc)


async def deliver_requests(engine: Engine) -> None:
    """Hand the requests other engines left for executions running here to their
    supervisors (a request delivered twice is applied once: see the supervisor)."""
    store = engine._require_store()
    for execution_id, request in await store.control_requests(engine.owner):
        supervisor = engine._live.get(execution_id)
        if supervisor is not None:
            wanted: Literal["cancel", "pause"] = (
                "pause" if request.get("action") == "pause" else "cancel"
            )
            supervisor.deliver(
                ControlRequest(action=wanted, reason=request.get("reason"), from_store=True)
            )
