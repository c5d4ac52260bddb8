"""The benchmark workflows, built in code so their sizes can vary."""

from __future__ import annotations

import itertools

import prana


def chain_workflow(length: int) -> prana.Workflow:
    """W1: a trigger and ``length`` trivial nodes in a line."""
    nodes = [{"key": "start", "type": "manual.trigger"}]
    nodes += [{"key": f"n{index}", "type": "core.noop"} for index in range(length)]
    keys = [node["key"] for node in nodes]
    connections = [{"from": source, "to": target} for source, target in itertools.pairwise(keys)]
    return prana.load_workflow({"id": f"chain{length}", "nodes": nodes, "connections": connections})


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
