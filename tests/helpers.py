"""Small helpers to write workflows in tests readably."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import anyio

import prana
import prana.testing

_CONNECTION = re.compile(r"^\s*([\w-]+)(?:\.([\w-]+))?\s*->\s*([\w-]+)(?:\.([\w-]+))?\s*$")


def connection(text: str) -> dict[str, str]:
    """``"a.true -> b"`` as a connection dict (ports default to main)."""
    match = _CONNECTION.match(text)
    assert match, f"bad connection {text!r}"
    source, source_port, target, target_port = match.groups()
    return {
        "from": source,
        "from_port": source_port or "main",
        "to": target,
        "to_port": target_port or "main",
    }


def workflow_dict(
    nodes: Mapping[str, str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]],
    connections: list[str],
    *,
    id: str = "test",
    **top: Any,
) -> dict[str, Any]:
    """A workflow as data: ``nodes`` maps key to type, (type, params) or a node dict."""
    node_list = []
    for key, spec in nodes.items():
        if isinstance(spec, str):
            node_list.append({"key": key, "type": spec})
        elif isinstance(spec, tuple):
            node_list.append({"key": key, "type": spec[0], "params": dict(spec[1])})
        else:
            node_list.append({"key": key, **spec})
    return {
        "id": id,
        "nodes": node_list,
        "connections": [connection(c) for c in connections],
        **top,
    }


def make_workflow(
    nodes: Mapping[str, str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]],
    connections: list[str],
    *,
    actions: prana.ActionRegistry | None = None,
    **top: Any,
) -> prana.Workflow:
    """A loaded, validated workflow."""
    return prana.load_workflow(
        workflow_dict(nodes, connections, **top), actions=actions or prana.ActionRegistry()
    )


async def run(
    workflow: prana.Workflow | dict[str, Any],
    input: Any = None,
    *,
    actions: prana.ActionRegistry | None = None,
    **engine_options: Any,
) -> prana.Execution:
    """Run one workflow on a fresh in-memory engine."""
    async with prana.Engine(actions=actions, env={}, **engine_options) as engine:
        return await engine.run(workflow, input)


async def drive(clock: prana.testing.VirtualClock, handle: Any) -> prana.Execution:
    """Wait for ``handle``'s execution to stop, moving ``clock`` to each deadline the
    engine sleeps until whenever everything else is idle."""
    results: list[prana.Execution] = []

    async def wait() -> None:
        results.append(await handle.result())

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        while not results:
            await anyio.wait_all_tasks_blocked()
            if not results:
                clock.jump()
    return results[0]
