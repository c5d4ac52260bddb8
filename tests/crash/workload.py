"""A durable workload for crash tests: ``python -m tests.crash.workload DB LOG JOBS``.

It runs JOBS executions on the SQLite file DB, or the store at the URL DB (chains,
branches, loops, timer waits, webhook waits, and executions queued by a concurrency
key), starting the jobs the store does
not have yet (each once, however many processes run this at once: by an idempotency
key) and carrying on those it has. ``$PRANA_LEASE`` sets the engine's lease. Every side effect appends ``start <idempotency key>`` to LOG before it
happens; every node result saved (its NodeCompleted event, published after its
checkpoint) appends ``acked <key>``. Prints DONE when every job has ended.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from pathlib import Path
from typing import Any

import anyio

import prana

actions = prana.ActionRegistry()
LOG: Path | None = None


def log(line: str) -> None:
    assert LOG is not None
    with LOG.open("a") as file:
        file.write(line + "\n")
        file.flush()


@actions.action("crash.effect")
async def effect(ctx: prana.NodeContext) -> dict[str, Any]:
    """A side effect: recorded under its idempotency key before it happens."""
    log(f"start {ctx.idempotency_key}")
    await anyio.sleep(0.002)
    job = ctx.trigger["data"]["job"]
    seen = ctx.input.get("seen", []) if isinstance(ctx.input, dict) else []
    return {"job": job, "seen": [*seen, f"{ctx.node_key}#{ctx.run_index}"]}


@actions.action("crash.slow_effect")
async def slow_effect(ctx: prana.NodeContext) -> dict[str, Any]:
    """A side effect that takes a while."""
    log(f"start {ctx.idempotency_key}")
    await anyio.sleep(0.05)
    return {"job": ctx.trigger["data"]["job"], "node": ctx.node_key}


@actions.action("crash.compute", pure=True)
def compute(ctx: prana.NodeContext) -> dict[str, Any]:
    """A pure step (saved with the pure steps after it, decision 0069), which records
    its start like an effect, so that the test sees whether one that was
    acknowledged ever ran again."""
    log(f"start {ctx.idempotency_key}")
    return {**ctx.input, "seen": [*ctx.input["seen"], f"{ctx.node_key}#{ctx.run_index}"]}


def acked(event: prana.events.Event) -> None:
    if isinstance(event, prana.events.NodeCompleted) and event.node_key.startswith("e"):
        log(f"acked {event.execution_id}:{event.node_key}:{event.run.run_index}")


def flows() -> list[prana.Workflow]:
    def workflow(
        id: str,
        nodes: dict[str, Any],
        connections: list[tuple[str, str, str]],
        **settings: Any,
    ) -> prana.Workflow:
        return prana.load_workflow(
            {
                "id": id,
                "settings": settings,
                "nodes": [
                    {"key": key, "type": spec} if isinstance(spec, str) else {"key": key, **spec}
                    for key, spec in nodes.items()
                ],
                "connections": [
                    {"from": a, "from_port": port, "to": b} for a, port, b in connections
                ],
            },
            actions=actions,
        )

    # Three pure steps between two effects: saved together, heard of once saved.
    steps = ["e0", "e_pure0", "e_pure1", "e_pure2", *(f"e{i}" for i in range(1, 6))]
    chain = workflow(
        "chain",
        {
            "start": "manual.trigger",
            **{key: "crash.compute" if "pure" in key else "crash.effect" for key in steps},
        },
        [("start", "main", "e0"), *((a, "main", b) for a, b in itertools.pairwise(steps))],
    )
    branches = workflow(
        "branches",
        {
            "start": "manual.trigger",
            "e0": "crash.effect",
            "odd": {"type": "logic.if", "params": {"condition": "{{ trigger.data.job % 2 == 1 }}"}},
            "e_odd1": "crash.effect",
            "e_odd2": "crash.effect",
            "e_even": "crash.effect",
            "e_side": "crash.effect",
            "join": {"type": "data.merge"},
            "e_last": "crash.effect",
        },
        [
            ("start", "main", "e0"),
            ("start", "main", "e_side"),
            ("e0", "main", "odd"),
            ("odd", "true", "e_odd1"),
            ("e_odd1", "main", "e_odd2"),
            ("odd", "false", "e_even"),
            ("e_odd2", "main", "join"),
            ("e_even", "main", "join"),
            ("e_side", "main", "join"),
            ("join", "main", "e_last"),
        ],
    )
    loop = workflow(
        "loop",
        {
            "start": "manual.trigger",
            "each": {"type": "core.for_each", "params": {"items": [1, 2, 3]}},
            "e_body": "crash.effect",
            "e_after": "crash.effect",
        },
        [
            ("start", "main", "each"),
            ("each", "loop", "e_body"),
            ("e_body", "main", "each"),
            ("each", "done", "e_after"),
        ],
    )
    waits = workflow(
        "waits",
        {
            "start": "manual.trigger",
            "e0": "crash.effect",
            "pause": {"type": "wait.interval", "params": {"duration": "150ms"}},
            "e1": "crash.effect",
            "approve": "wait.webhook",
            "e2": "crash.effect",
        },
        [
            ("start", "main", "e0"),
            ("e0", "main", "pause"),
            ("pause", "main", "e1"),
            ("e1", "main", "approve"),
            ("approve", "main", "e2"),
        ],
    )
    # One execution of each key in progress at a time (keyed_by says which key), with
    # effects long enough that executions let in together would overlap.
    keyed = workflow(
        "keyed",
        {"start": "manual.trigger", "e0": "crash.slow_effect", "e1": "crash.slow_effect"},
        [("start", "main", "e0"), ("e0", "main", "e1")],
        concurrency_key="{{ input.job % 2 }}",
    )
    return [chain, branches, loop, waits, keyed]


def keyed_by(job: int) -> int:
    """The concurrency key of the ``keyed`` workflow's execution of ``job``."""
    return job % 2


async def main(db: str, jobs: int) -> None:
    workflows = flows()
    lease = float(os.environ.get("PRANA_LEASE", "30"))
    async with prana.Engine(
        actions=actions,
        store=db if "://" in db else f"sqlite:///{db}",
        middleware=[acked],
        env={},
        lease=lease,
        heartbeat=min(lease / 3, 10.0),
    ) as engine:
        known = {
            execution.input["job"]: execution.id
            for execution in await engine.list_executions(limit=10_000)
        }
        for job in range(jobs):
            if job not in known:
                workflow = workflows[job % len(workflows)]
                with contextlib.suppress(prana.errors.ExecutionExists):  # another process's
                    await engine.start(workflow, {"job": job}, idempotency_key=f"job{job}")
        while True:
            unfinished = [e for e in await engine.list_executions(limit=10_000) if not e.finished]
            if not unfinished:
                break
            for execution in unfinished:
                for suspension in execution.suspensions:
                    if suspension.token is not None:
                        with contextlib.suppress(prana.PranaError):  # resumed meanwhile
                            await engine.resume_token(suspension.token, {"approved": True})
            await anyio.sleep(0.05)
    print("DONE", flush=True)


if __name__ == "__main__":
    LOG = Path(sys.argv[2])
    anyio.run(main, sys.argv[1], int(sys.argv[3]))
