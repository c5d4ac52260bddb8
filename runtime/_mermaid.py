"""A workflow as a Mermaid flowchart (``prana graph``)."""

from __future__ import annotations

import html

from ._graph import GraphEdge, find_loops
from ._model import DEFAULT_PORT, Node, Workflow
from ._registry import ActionRegistry

_SHAPES = {
    "trigger": ('(["', '"])'),
    "branch": ('{"', '"}'),
    "loop": ('{{"', '"}}'),
    "action": ('["', '"]'),
}
_BRANCHING = {"logic.if", "logic.switch"}


def _label(text: str) -> str:
    return html.escape(text, quote=True).replace("&quot;", "#quot;")


def _shape(node: Node, registry: ActionRegistry | None, loop_entries: set[str]) -> tuple[str, str]:
    action = registry.get(node.type) if registry is not None else None
    if action is not None and action.trigger is not None:
        return _SHAPES["trigger"]
    if node.key in loop_entries:
        return _SHAPES["loop"]
    if node.type in _BRANCHING:
        return _SHAPES["branch"]
    return _SHAPES["action"]


def to_mermaid(workflow: Workflow, actions: ActionRegistry | None = None) -> str:
    """Mermaid ``flowchart`` text of a workflow: one shape per node, labelled with its
    key (and name) and action; edges labelled with their ports when not ``main``;
    loop-back connections dashed.
    """
    keys = [node.key for node in workflow.nodes]
    edges = [
        GraphEdge(number=index, source=connection.from_, target=connection.to)
        for index, connection in enumerate(workflow.connections)
    ]
    loops, _ = find_loops(keys, edges)
    loop_entries = {loop.entry for loop in loops}
    back_edges = {index for loop in loops for index in loop.back_edges}

    lines = ["flowchart LR"]
    for node in workflow.nodes:
        opening, closing = _shape(node, actions, loop_entries)
        title = node.key if not node.name or node.name == node.key else f"{node.name} ({node.key})"
        lines.append(
            f"    {node.key}{opening}{_label(title)}<br/><small>{_label(node.type)}</small>{closing}"
        )
    for index, connection in enumerate(workflow.connections):
        ports = []
        if connection.from_port != DEFAULT_PORT:
            ports.append(connection.from_port)
        if connection.to_port != DEFAULT_PORT:
            ports.append(f"to {connection.to_port}")
        arrow = "-.->" if index in back_edges else "-->"
        label = f"|{_label(' '.join(ports))}|" if ports else ""
        lines.append(f"    {connection.from_} {arrow}{label} {connection.to}")
    return "\n".join(lines) + "\n"
