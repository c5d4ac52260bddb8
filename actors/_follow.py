"""Following an execution from the command line: its events as they happen, and on
through the waits that end soon.

A command shows what the execution it started does (a live view on a terminal, plain
lines elsewhere, both on stderr), and keeps it going in-process through waits and
retry backoffs that end within ``--wait-up-to``, saying what it waits for, as n8n's
editor does for short waits: a workflow with a 2 s wait completes from the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence

import anyio

from prana._records import Execution, Suspension

from ._engine import Engine
from ._handle import ExecutionHandle
from ._progress import LiveProgress, PlainProgress, use_color


async def follow(
    engine: Engine,
    start: Callable[[], Awaitable[ExecutionHandle]],
    *,
    quiet: bool,
    wait_up_to: float,
    following: list[str],
) -> Execution:
    """Start an execution on ``engine`` (``start()``) and show its events live until
    it stops, and on through the waits that end within ``wait_up_to`` seconds; its
    id goes in ``following`` as soon as it is known."""
    subscription = engine.events()  # every event, from before the start on
    handle = await start()
    following.append(handle.id)
    view: LiveProgress | PlainProgress | None = None
    if quiet:
        subscription.close()
    elif use_color(sys.stderr):
        view = LiveProgress(sys.stderr, f"{handle.snapshot().workflow_id} {handle.id[:8]}")
    else:
        view = PlainProgress(sys.stderr)

    async def show() -> None:
        async for event in subscription:
            if view is not None and event.execution_id == handle.id:
                view(event)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(show)
            ticker = anyio.CancelScope()
            if isinstance(view, LiveProgress):
                group.start_soon(_tick, view, ticker)
            execution = await through_short_waits(
                engine, await handle.result(), wait_up_to, say=view is not None
            )
            subscription.close()  # the view shows what came before the end, then stops
            ticker.cancel()
    finally:
        if view is not None:
            view.close()
    return execution


async def _tick(view: LiveProgress, scope: anyio.CancelScope) -> None:
    with scope:
        await view.tick()


async def through_short_waits(
    engine: Engine, execution: Execution, wait_up_to: float, *, say: bool = False
) -> Execution:
    """``execution``, or if it waits for a timer (a wait, a retry's backoff) that ends
    within ``wait_up_to`` seconds, the execution at its next stop after that, and so
    on. With ``say``, it says on stderr what it waits for."""
    while execution.status == "suspended":
        if not goes_on(execution.suspensions, engine.clock.now(), wait_up_to, say=say):
            break
        execution = await engine.wait(execution.id, until=_moved_on(execution))
    return execution


def goes_on(suspensions: Sequence[Suspension], now: float, wait_up_to: float, *, say: bool) -> bool:
    """Whether an execution waiting on ``suspensions`` carries on by itself within
    ``wait_up_to`` seconds of ``now`` (one of its waits is a timer due by then), so
    that a command following it follows it on; with ``say``, it says on stderr what
    it waits for."""
    due = [s for s in suspensions if s.wake_at is not None]
    if not due:
        return False
    soonest = min(due, key=lambda suspension: suspension.wake_at or 0.0)
    left = (soonest.wake_at or 0.0) - now
    if left > wait_up_to:
        return False
    if say:
        print(
            f"prana: waiting {max(left, 0.0):.1f} s for {soonest.node_key} "
            f"({soonest.kind}) to end (--wait-up-to {wait_up_to:g} s)",
            file=sys.stderr,
        )
    return True


def _moved_on(execution: Execution) -> Callable[[Execution], bool]:
    """Whether a later stop of ``execution`` is past the waits it has now."""
    waits = {suspension.execution_index for suspension in execution.suspensions}

    def moved_on(later: Execution) -> bool:
        return later.status != "suspended" or waits != {
            suspension.execution_index for suspension in later.suspensions
        }

    return moved_on
