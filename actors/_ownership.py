"""Who runs an execution: engine identities, leases and dead owners (DESIGN §7, §8).

An engine's owner id is ``host:pid:random``. A running execution belongs to one
engine until its lease expires (in real time: leases are between processes, decision
0014); the engine renews the leases of the executions it runs with every heartbeat.
An engine that finds executions owned by a process of its own host that no longer
exists takes them at once instead of waiting for their leases to expire.

Fencing: an engine knows until when, on its monotonic clock, it holds each execution
it runs (:attr:`ExecutionSupervisor.lease_until`). Before it starts an action past that
point (after a freeze, a long GC pause, a loop blocked by someone else), it asks the
store whether it still holds the execution (:meth:`Leases.confirm`), and stops
running it if not: an engine never starts an action of an execution another engine
took over.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable

from prana.storage import Store


def new_owner_id() -> str:
    """An owner id for this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def dead_owners(owners: Iterable[str | None]) -> list[str]:
    """The owners, among ``owners``, that are processes of this host no longer alive."""
    host = socket.gethostname()
    dead = []
    for owner in owners:
        if owner is None:
            continue
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


class Leases:
    """The leases one engine holds on the executions it runs, in one store.

    A lease written now runs until :meth:`expiry` (wall-clock time, in the store);
    the engine counts on it until :meth:`deadline` (its monotonic clock, taken
    before the write, so never later than the lease really ends).
    """

    def __init__(self, store: Store, *, owner: str, term: float) -> None:
        self.owner = owner
        self.term = term
        self._store = store

    def expiry(self) -> float:
        """The wall-clock time a lease written now runs until."""
        return time.time() + self.term

    def deadline(self) -> float:
        """How long, on the monotonic clock, a lease about to be written holds."""
        return time.monotonic() + self.term

    async def renew(self, execution_ids: Iterable[str]) -> tuple[set[str], float]:
        """Extend the leases of ``execution_ids``; return those the engine still
        holds, and until when (monotonic). Raises :class:`StoreError`."""
        deadline = self.deadline()
        held = await self._store.renew(execution_ids, owner=self.owner, lease_expires=self.expiry())
        return held, deadline

    async def confirm(self, execution_id: str) -> float | None:
        """Ask the store whether the engine still holds ``execution_id`` (and extend
        the lease if so): until when it does (monotonic), or ``None`` if another
        engine took it. Raises :class:`StoreError`."""
        held, deadline = await self.renew([execution_id])
        return deadline if execution_id in held else None

    async def release(self, execution_ids: Iterable[str]) -> None:
        """Let the leases of ``execution_ids`` end now, so that another engine takes
        them over at once. Raises :class:`StoreError`."""
        await self._store.renew(execution_ids, owner=self.owner, lease_expires=0.0)


class LeftToOthers:
    """The executions an engine could not restore and left to the other engines alive
    (:meth:`LiveExecutions.cannot_restore`), and since when.

    Every engine arms the timers that come due and takes over orphans at each
    heartbeat, so within a lease's term or two an engine that can carry such an
    execution on has done so. One that still comes back after ``grace`` seconds is one
    no engine alive can restore (every one lacks its workflow's actions, say): it is
    failed then, saying why, rather than passed from engine to engine for ever. An
    execution not seen for ``grace`` starts a new count (another engine carried it on
    meanwhile, and it came back later)."""

    KEPT = 10_000  # past this many, the oldest counts are dropped (they start again)

    def __init__(self, grace: float, now: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self._now = now
        self._seen: dict[str, tuple[float, float]] = {}  # id -> (first, last)

    def leave(self, execution_id: str) -> bool | None:
        """Whether to leave ``execution_id`` to the other engines still: ``None`` the
        first time (say so), ``True`` while within ``grace``, then ``False`` (fail it:
        it is forgotten here)."""
        now = self._now()
        first, last = self._seen.pop(execution_id, (now, now))
        if now - last > self.grace:
            first = now  # not seen for a while: a new count
        if now - first >= self.grace:
            return False
        if len(self._seen) >= self.KEPT:
            del self._seen[next(iter(self._seen))]
        self._seen[execution_id] = (first, now)  # re-inserted: the dict stays by age
        return None if first == now else True
