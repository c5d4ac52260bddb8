"""Actions for the daemon's process tests: ``mark.step`` records each run;
``hold.step`` records each start and, while the file $DAEMON_HOLD exists, takes a
minute (long enough to stop the daemon under it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

import prana

actions = prana.ActionRegistry()


def record(what: str, ctx: prana.NodeContext) -> None:
    with Path(os.environ["DAEMON_LOG"]).open("a") as file:
        file.write(f"{what} {ctx.execution_id} {os.getpid()}\n")


@actions.action("mark.step")
def mark(ctx: prana.NodeContext) -> Any:
    record("mark", ctx)
    return ctx.input


@actions.action("hold.step")
async def hold(ctx: prana.NodeContext) -> Any:
    record("hold", ctx)
    if Path(os.environ["DAEMON_HOLD"]).exists():
        await anyio.sleep(60)
    return {"held": ctx.input["body"]}
