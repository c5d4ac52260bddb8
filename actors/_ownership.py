"""Who runs an execution: engine identities and dead-owner detection (DESIGN §8).

An engine's owner id is ``host:pid:random``. An engine that finds executions owned
by a process of its own host that no longer exists takes them at once instead of
waiting for their leases to expire; anything else waits for the lease. Taken
executions carry on from their last checkpoint (:func:`recover_orphans`); the
:func:`heartbeat` renews the leases an engine holds.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio

from prana._errors import PranaError

from ._timers import arm_due_timers

if TYPE_CHECKING:
    from ._engine import Engine

logger = logging.getLogger("prana.engine")


def new_owner_id() -> str:
    """An owner id for this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def dead_owners(owners: Iterable[str]) -> list[str]:
    """The owners, among ``owners``, that are processes of this host no longer alive."""
    host = socket.gethostname()
    dead = []
    for owner in owners:
        owner_host, _, rest = owner.partition(":")
        pid_text = rest.partition(":")[0]
        if owner_host != host or not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.append(owner)
        except PermissionError:
            continue  # alive, owned by someone else
    return dead


async def recover_orphans(engine: Engine, dead: Iterable[str] = ()) -> None:
    """Take over running executions whose engine died, and carry them on from their
    last checkpoint. One that cannot run here (its workflow is missing or no longer
    compiles) is released again and left alone from then on."""
    store = engine._require_store()
    taken = await store.claim_orphans(
        owner=engine.owner,
        lease_expires=time.time() + engine._lease,
        now=time.time(),
        dead_owners=dead,
    )
    for execution_id in taken:
        if execution_id in engine._live or execution_id in engine._unrunnable:
            continue
        try:
            stored = await engine._load(execution_id)
            machine = await engine._restore(stored)
        except PranaError as exc:
            engine._unrunnable.add(execution_id)
            logger.error("cannot carry on execution %s here: %s", execution_id, exc)
            await store.renew([execution_id], owner=engine.owner, lease_expires=0.0)
            continue
        logger.info("carrying on execution %s from its last checkpoint", execution_id)
        engine._launch(machine, machine.recover)


async def heartbeat(engine: Engine, interval: float) -> None:
    """Every ``interval`` seconds: renew the leases of the executions the engine
    runs; take over those of engines that died, and arm the timers that come due
    before the next beat, whichever engine set them."""
    store = engine._require_store()
    while True:
        await anyio.sleep(interval)
        await store.renew(
            list(engine._live), owner=engine.owner, lease_expires=time.time() + engine._lease
        )
        if engine._recover:
            await recover_orphans(engine)
            await arm_due_timers(engine, interval)
