"""A process that starts an execution and SIGKILLs itself the moment ``start``
returns, before any node has run. Run as ``python -m tests.crash.start_then_crash
DB``; prints the execution's id."""

from __future__ import annotations

import os
import signal
import sys

import anyio

import prana

WORKFLOW = {
    "id": "accepted_order",
    "nodes": [
        {"key": "start", "type": "manual.trigger"},
        {"key": "ship", "type": "shop.ship"},
    ],
    "connections": [{"from": "start", "to": "ship"}],
}


def actions(shipped: list[object]) -> prana.ActionRegistry:
    """The actions of the workflow; ``shop.ship`` records what it shipped."""
    registry = prana.ActionRegistry()

    @registry.action("shop.ship")
    async def ship(ctx: prana.NodeContext) -> object:
        shipped.append(ctx.input)
        return {"shipped": ctx.input["order"]}

    return registry


async def main(db: str) -> None:
    async with prana.Engine(store=f"sqlite:///{db}", actions=actions([])) as engine:
        handle = await engine.start(WORKFLOW, {"order": 7})
        print(handle.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
