"""A workload for the frozen-engine test: ``python -m tests.crash.freeze DB LOG JOBS BACKEND``
(DB: a SQLite file, or a store URL).

It starts JOBS executions whose ``call`` node fails its first attempt and waits half
a second, in memory, to try again; then one execution whose ``freeze`` node stops
this very process (SIGSTOP) while the others wait, if ``PRANA_FREEZE=1``. The engine
holds its executions for a lease of one second, so another engine on the same file
takes them over while this one is frozen. Every action start appends
``start <idempotency key> <attempt> <pid>`` to LOG before anything else, and ``frozen
<pid>`` just before the process stops itself. Prints DONE when every execution on
the file has ended.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

import prana

actions = prana.ActionRegistry()
LOG: Path | None = None
LEASE = 1.0


def log(line: str) -> None:
    assert LOG is not None
    with LOG.open("a") as file:
        file.write(f"{line} {os.getpid()}\n")
        file.flush()


@actions.action("freeze.flaky")
async def flaky(ctx: prana.NodeContext) -> dict[str, Any]:
    """Fails its first attempt."""
    log(f"start {ctx.idempotency_key} {ctx.attempt}")
    if ctx.attempt == 1:
        raise ConnectionResetError("the first attempt fails")
    return {"job": ctx.input["job"], "attempt": ctx.attempt}


@actions.action("freeze.step")
async def step(ctx: prana.NodeContext) -> Any:
    log(f"start {ctx.idempotency_key} {ctx.attempt}")
    await anyio.sleep(0.001)
    return ctx.input


@actions.action("freeze.stop")
async def stop(ctx: prana.NodeContext) -> Any:
    """Freezes this process, as a suspended VM or a debugger would (once)."""
    log(f"start {ctx.idempotency_key} {ctx.attempt}")
    if os.environ.get("PRANA_FREEZE") == "1":
        await anyio.sleep(0.1)  # the others' first attempts fail meanwhile
        log("frozen")
        os.kill(os.getpid(), signal.SIGSTOP)
    return ctx.input


def workflows() -> tuple[prana.Workflow, prana.Workflow]:
    retrying = prana.load_workflow(
        {
            "id": "retrying",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {
                    "key": "call",
                    "type": "freeze.flaky",
                    "settings": {
                        "retry": {"max_attempts": 3, "backoff": "fixed", "delay": "500ms"}
                    },
                },
                {"key": "after", "type": "freeze.step"},
            ],
            "connections": [{"from": "start", "to": "call"}, {"from": "call", "to": "after"}],
        },
        actions=actions,
    )
    freezer = prana.load_workflow(
        {
            "id": "freezer",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "freeze", "type": "freeze.stop"},
                {"key": "after", "type": "freeze.step"},
            ],
            "connections": [{"from": "start", "to": "freeze"}, {"from": "freeze", "to": "after"}],
        },
        actions=actions,
    )
    return retrying, freezer


async def main(db: str, jobs: int) -> None:
    retrying, freezer = workflows()
    async with prana.Engine(
        actions=actions,
        store=db if "://" in db else f"sqlite:///{db}",
        env={},
        lease=LEASE,
        heartbeat=0.2,
    ) as engine:
        if not await engine.list_executions(limit=1):
            for job in range(jobs):
                await engine.start(retrying, {"job": job})
            await engine.start(freezer, {"job": jobs})
        while True:
            executions = await engine.list_executions(limit=10_000)
            if all(execution.finished for execution in executions):
                break
            await anyio.sleep(0.05)
    print("DONE", flush=True)


if __name__ == "__main__":
    LOG = Path(sys.argv[2])
    anyio.run(main, sys.argv[1], int(sys.argv[3]), backend=sys.argv[4])
