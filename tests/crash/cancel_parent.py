"""A process that starts a parent waiting on its sync child, cancels the parent, and
SIGKILLs itself the moment the parent's cancellation is saved: before the child is
cancelled. Run as ``python -m tests.crash.cancel_parent DB``; prints both ids."""

from __future__ import annotations

import os
import signal
import sys

import anyio

import prana

CHILD = {
    "id": "approval_child",
    "nodes": [
        {"key": "start", "type": "manual.trigger"},
        {"key": "ask", "type": "wait.webhook"},
    ],
    "connections": [{"from": "start", "to": "ask"}],
}
PARENT = {
    "id": "ordering_parent",
    "nodes": [
        {"key": "start", "type": "manual.trigger"},
        {"key": "call", "type": "workflow.execute", "params": {"workflow": "approval_child"}},
    ],
    "connections": [{"from": "start", "to": "call"}],
}


async def main(db: str) -> None:
    cancelling: list[str] = []

    def crash(event: prana.events.Event) -> None:
        if isinstance(event, prana.events.ExecutionCancelled) and event.execution_id in cancelling:
            os.kill(os.getpid(), signal.SIGKILL)

    async with prana.Engine(
        store=f"sqlite:///{db}", middleware=[crash], recover=False, workflows=[CHILD]
    ) as engine:
        waiting = await engine.run(PARENT)
        (suspension,) = waiting.suspensions
        print(waiting.id, suspension.child_execution_id, flush=True)
        cancelling.append(waiting.id)
        await engine.cancel(waiting.id, "the order was withdrawn")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
