"""Background services of an engine, and the one failure policy they share (DESIGN §7).

The heartbeat (leases, recovery, timers due soon), the pick-up of control requests,
the reconciling of ended children, the timer actor and the store's upkeep run as
long as the engine does. Whatever goes wrong in them is handled one way:

* a :class:`PranaError` (the store locked by another process past ``busy_timeout``,
  a full disk, a file gone for a moment) is logged and the work tried again, with a
  backoff that doubles from 50 ms up to the service's own interval (or 30 s);
* an execution that cannot be carried on is failed with a recorded error (the
  callers do that: see :meth:`LiveExecutions.end_unrestorable`), never left stuck;
* anything else is a bug of prana's: it ends the engine with an
  :class:`InternalError`, whose cause is the original exception.

:meth:`BackgroundServices.health` says how each service is doing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import anyio
import attrs
from anyio.abc import TaskGroup

from prana._errors import InternalError, PranaError

logger = logging.getLogger("prana.engine")

ServiceState = Literal["running", "retrying"]
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 30.0


@attrs.frozen(kw_only=True)
class ServiceHealth:
    """How one background service is doing: ``running``, or ``retrying`` after
    ``failures`` failures in a row, the last of which is ``last_error`` (at
    ``last_error_at``, seconds since the epoch). ``last_success_at`` is when it last
    did its work without error."""

    name: str
    state: ServiceState
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None


@attrs.frozen(kw_only=True)
class EngineHealth:
    """How an engine is doing (:meth:`prana.Engine.health`): ``ok`` when every
    background service is running without errors; ``live_executions`` in memory;
    ``leader``: it leads the engines on its store (:attr:`prana.Engine.leader`);
    ``engines``: the owner ids of the engines alive on its store at its last
    heartbeat, itself included (empty before the first)."""

    ok: bool
    live_executions: int
    services: tuple[ServiceHealth, ...]
    leader: bool = False
    engines: tuple[str, ...] = ()

    def service(self, name: str) -> ServiceHealth:
        """The health of the service called ``name``."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


@attrs.define
class Service:
    """The running record of one service: what :class:`ServiceHealth` reports."""

    name: str
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None

    def succeeded(self) -> None:
        """It did its work."""
        self.failures = 0
        self.last_success_at = time.time()

    def failed(self, exc: BaseException) -> float:
        """It failed with ``exc`` (a :class:`PranaError`, not a bug): log it, and
        return how long to wait before trying again."""
        self.failures += 1
        self.last_error = str(exc)
        self.last_error_at = time.time()
        backoff: float = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2.0 ** (self.failures - 1))
        logger.warning(
            "%s failed (%d in a row; trying again in %.2f s): %s",
            self.name,
            self.failures,
            backoff,
            exc,
        )
        return backoff

    def health(self) -> ServiceHealth:
        """A frozen copy, for :meth:`BackgroundServices.health`."""
        return ServiceHealth(
            name=self.name,
            state="retrying" if self.failures else "running",
            failures=self.failures,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            last_success_at=self.last_success_at,
        )


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a problem the failure policy retries (not a bug)."""
    return isinstance(exc, PranaError) and not isinstance(exc, InternalError)


def as_bug(exc: BaseException, what: str) -> InternalError:
    """The :class:`InternalError` that ends the engine for a bug in ``what``."""
    error = InternalError(f"{what} failed on a bug of prana's: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


class BackgroundServices:
    """The services of one engine, run under the failure policy."""

    def __init__(self) -> None:
        self._services: dict[str, Service] = {}

    def service(self, name: str) -> Service:
        """The record of the service called ``name`` (made on first use)."""
        return self._services.setdefault(name, Service(name))

    def health(self) -> tuple[ServiceHealth, ...]:
        """How every service is doing."""
        return tuple(service.health() for service in self._services.values())

    def start_every(
        self,
        task_group: TaskGroup,
        name: str,
        interval: float,
        work: Callable[[], Awaitable[None]],
    ) -> None:
        """Start :meth:`every` in ``task_group`` (the service is known from now on)."""
        self.service(name)
        task_group.start_soon(self.every, name, interval, work, name=f"prana {name}")

    def start_keeping(
        self, task_group: TaskGroup, name: str, work: Callable[[], Awaitable[None]]
    ) -> None:
        """Start :meth:`keep` in ``task_group`` (the service is known from now on)."""
        self.service(name)
        task_group.start_soon(self.keep, name, work, name=f"prana {name}")

    async def every(self, name: str, interval: float, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work()`` every ``interval`` seconds until cancelled; a failure is
        tried again sooner (see the module's docstring)."""
        service = self.service(name)
        wait = interval
        while True:
            await anyio.sleep(wait)
            try:
                await work()
            except Exception as exc:
                if not is_transient(exc):
                    raise as_bug(exc, name) from exc
                wait = min(interval, service.failed(exc))
            else:
                service.succeeded()
                wait = interval

    async def keep(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work()`` (which runs until cancelled) again whenever it fails, after
        a backoff, until cancelled."""
        while True:
            await self.retrying(name, work)

    async def retrying(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Do ``work()`` once, trying again after a failure until it succeeds (or is
        cancelled): for one-off work of a service, such as firing one timer."""
        service = self.service(name)
        while True:
            try:
                await work()
            except Exception as exc:
                if not is_transient(exc):
                    raise as_bug(exc, name) from exc
                await anyio.sleep(service.failed(exc))
            else:
                service.succeeded()
                return
