"""The benchmark workflows, built in code so their sizes can vary."""

from __future__ import annotations

import itertools
import os

import prana

# The peers' workload: each node computes x + 1 (``bench.plus_one``), where prana's own
# workloads pass their input through (``core.noop``).
ACTIONS = prana.ActionRegistry()


@ACTIONS.action("bench.plus_one")
def plus_one(ctx: prana.NodeContext) -> dict[str, int]:
    """``{"n": n + 1}`` for an input ``{"n": n}`` (0 when there is none)."""
    n = ctx.input.get("n", 0) if isinstance(ctx.input, dict) else 0
    return {"n": n + 1}


@ACTIONS.action("bench.plus_one_async")
async def plus_one_async(ctx: prana.NodeContext) -> dict[str, int]:
    """``bench.plus_one`` as an ``async def`` action (what real actions are)."""
    n = ctx.input.get("n", 0) if isinstance(ctx.input, dict) else 0
    return {"n": n + 1}


@ACTIONS.action("bench.pass", isolate_inputs=False, json_output=True)
def pass_on(ctx: prana.NodeContext) -> object:
    """``core.noop`` as an action that is not pure: each run is saved before the next
    starts (decision 0069), as any action with effects is."""
    return ctx.input


def node_type() -> str:
    """``bench.plus_one`` when ``PRANA_BENCH_LIKE_PEERS=1`` (like for like with the
    peers; ``bench.plus_one_async`` with ``PRANA_BENCH_ASYNC=1`` too), else
    ``core.noop``."""
    if os.environ.get("PRANA_BENCH_LIKE_PEERS") != "1":
        return "core.noop"
    return (
        "bench.plus_one_async" if os.environ.get("PRANA_BENCH_ASYNC") == "1" else "bench.plus_one"
    )


def chain_workflow(length: int, node: str = "core.noop") -> prana.Workflow:
    """W1: a trigger and ``length`` trivial nodes in a line (``node`` each)."""
    nodes = [{"key": "start", "type": "manual.trigger"}]
    nodes += [{"key": f"n{index}", "type": node} for index in range(length)]
    keys = [node["key"] for node in nodes]
    connections = [{"from": source, "to": target} for source, target in itertools.pairwise(keys)]
    return prana.load_workflow(
        {"id": f"chain{length}", "nodes": nodes, "connections": connections}, actions=ACTIONS
    )


def branches_workflow(branches: int, length: int) -> prana.Workflow:
    """W1b: a trigger, ``branches`` chains of ``length`` trivial nodes, one merge."""
    nodes = [{"key": "start", "type": "manual.trigger"}, {"key": "merge", "type": "data.merge"}]
    connections = []
    for branch in range(branches):
        previous = "start"
        for step in range(length):
            key = f"b{branch}_{step}"
            nodes.append({"key": key, "type": "core.noop"})
            connections.append({"from": previous, "to": key})
            previous = key
        connections.append({"from": previous, "to": "merge"})
    return prana.load_workflow(
        {"id": f"branches{branches}x{length}", "nodes": nodes, "connections": connections}
    )
