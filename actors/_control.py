"""Control of executions wherever they are: cancel, pause, unpause, retry (DESIGN §5.7).

An execution is in one of three places, and a request reaches it there:

* in memory here, or waiting in the store: :meth:`LiveExecutions.deliver` hands it to
  the supervisor, or takes the execution from the store and applies it;
* running in another engine: the request is left in the store; that engine picks it
  up (:func:`deliver_requests`, about once a second) and applies it, and this one
  follows the stored status until it has. If that engine is gone (its process died,
  or its lease expired), this one claims the execution and applies the request
  itself.

This module is the "when" and "where" of control; whether a request is legal is the
state machine's decision (:mod:`prana._control`): an illegal one raises
:class:`InvalidTransition` and changes nothing.
"""

from __future__ import annotations

import time

import anyio

from prana._control import ControlAction, check_allowed
from prana._records import ErrorInfo, Execution, StoredExecution
from prana.storage import Store

from ._live import LiveExecutions, Unrestorable
from ._ownership import dead_owners
from ._supervision import ControlRequest, Lost

# How often (seconds) an engine that left a request for another looks for its effect.
_FOLLOW_POLL = 0.05


async def control(
    live: LiveExecutions,
    store: Store,
    execution_id: str,
    action: ControlAction,
    reason: str | None = None,
) -> Execution:
    """Apply ``action`` to the execution wherever it is; return it once applied:
    cancelled or paused, or (unpause, retry) when it next waits or ends.

    Raises :class:`InvalidTransition` (changing nothing) if the execution cannot
    take it, :class:`ExecutionNotFound` for an unknown id, and the
    :class:`Unrestorable` error if it cannot be carried on here (but for a cancel,
    which ends it without running anything).
    """
    while True:
        request = ControlRequest(action=action, reason=reason)
        try:
            found = await live.deliver(execution_id, request, claim=True)
        except Unrestorable as exc:
            if action != "cancel":
                raise
            cancelled = ErrorInfo(code="cancelled", message=reason or "cancelled")
            if await live.end_unrestorable(exc, "cancelled", cancelled):
                return (await live.load(execution_id)).to_execution()
            continue  # changed meanwhile: look again
        if isinstance(found, StoredExecution):  # running in another engine
            check_allowed(action, found.status, execution_id)
            done = await _ask_owner(live, store, found, action, reason)
            if done is not None:
                return done
            continue
        stopped = found.stop_waiter()
        await request.done.wait()
        if isinstance(request.error, Lost):
            continue  # another engine took it first: look again
        if request.error is not None:
            raise request.error
        try:
            return await found.wait_stop(stopped)
        except Lost:
            continue


async def _ask_owner(
    live: LiveExecutions,
    store: Store,
    stored: StoredExecution,
    action: ControlAction,
    reason: str | None,
) -> Execution | None:
    """Leave the request for the engine running the execution and follow it until
    applied; ``None`` if the execution changed meanwhile, or its engine is gone
    (look again)."""
    if action not in ("cancel", "pause"):
        return None
    if not await store.request_control(stored.id, {"action": action, "reason": reason}):
        return None
    while True:
        await anyio.sleep(_FOLLOW_POLL)
        current = await live.load(stored.id)
        if action == "cancel" and current.status == "cancelled":
            return current.to_execution()
        if action == "pause" and current.status == "paused":
            return current.to_execution()
        if current.status != "running":
            return None
        expired = (current.lease_expires or 0.0) <= time.time()
        if expired or dead_owners([current.owner]):
            return None  # its engine is gone: take it over
        # Still running: the request is not picked up yet, or (pausing) its
        # running nodes are finishing.


async def deliver_requests(live: LiveExecutions, store: Store, owner: str) -> None:
    """Hand the requests other engines left for executions running here to their
    supervisors (a request delivered twice is applied once: see the supervisor).
    Raises :class:`StoreError` if the store cannot say."""
    for execution_id, request in await store.control_requests(owner):
        supervisor = live.get(execution_id)
        if supervisor is not None:
            action: ControlAction = "pause" if request.get("action") == "pause" else "cancel"
            supervisor.deliver(
                ControlRequest(action=action, reason=request.get("reason"), from_store=True)
            )
