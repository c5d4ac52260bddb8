"""Actions for the crash tests (retries, sub-workflows), importable by the child process."""

from __future__ import annotations

from pathlib import Path

import prana

actions = prana.ActionRegistry()


@actions.action("crash.flaky")
def flaky(ctx: prana.NodeContext) -> object:
    """Logs each attempt to the file named by ``params.log``; the first one fails."""
    with Path(ctx.params["log"]).open("a") as file:
        file.write(f"{ctx.idempotency_key} {ctx.attempt}\n")
    if ctx.attempt == 1:
        raise ConnectionResetError("first attempt fails")
    return {"attempt": ctx.attempt}


@actions.action("crash.record")
def record(ctx: prana.NodeContext) -> object:
    """Logs the run's idempotency key to the file named by ``params.log``."""
    with Path(ctx.params["log"]).open("a") as file:
        file.write(f"{ctx.node_key} {ctx.idempotency_key}\n")
    return ctx.input
