"""Actions for the CLI's process tests: ``slow.step`` takes a while the first time
(long enough to interrupt or kill the command), and is quick when run again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

import prana

actions = prana.ActionRegistry()


def record(key: str) -> bool:
    """Append ``start KEY PID`` to $SLOW_LOG; whether it is the first line."""
    log = Path(os.environ["SLOW_LOG"])
    first = not log.exists()
    with log.open("a") as file:
        file.write(f"start {key} {os.getpid()}\n")
    return first


@actions.action("slow.step")
async def step(ctx: prana.NodeContext) -> Any:
    """Records its start; sleeps a minute the first time."""
    if record(ctx.idempotency_key):
        await anyio.sleep(60)
    return {"step": ctx.node_key, "input": ctx.input}
