"""Where each node and connection of a workflow is drawn: a layered layout, left to
right, computed on the server from the definition alone (decision 0056).

Connections that close a loop (found by a depth-first walk from the triggers) are
back edges: the others form a DAG whose nodes go in columns by their longest path
from a trigger. Within a column, nodes are ordered by the mean position of their
neighbours in the column before, then after (a few sweeps), which untangles most
crossings. A node's input ports are on its left side, its output ports on its right.
Everything is linear in the size of the graph but for the sorts of the sweeps.
"""

from __future__ import annotations

from collections import defaultdict, deque

import attrs

import prana

NODE_WIDTH = 180.0
PORT_STEP = 18.0
HEADER = 52.0  # the node's title, type and state, above its ports
COLUMN_GAP = 90.0
ROW_GAP = 26.0
MARGIN = 20.0
SWEEPS = 4


@attrs.frozen
class Box:
    """A node's place: its top-left corner, size, and ports (name -> y offset)."""

    node: prana.Node
    x: float
    y: float
    width: float
    height: float
    inputs: dict[str, float]
    outputs: dict[str, float]
    column: int


@attrs.frozen
class Edge:
    """A connection, from an output port's point to an input port's point."""

    connection: prana.Connection
    start: tuple[float, float]
    end: tuple[float, float]
    back: bool  # closes a loop: drawn below, dashed


@attrs.frozen
class Layout:
    boxes: dict[str, Box]
    edges: list[Edge]
    width: float
    height: float


def _back_edges(workflow: prana.Workflow, outgoing: dict[str, list[str]]) -> set[tuple[str, str]]:
    """The connections that lead back to a node on the walk's path: they close loops."""
    incoming = {c.to for c in workflow.connections}
    roots = [n.key for n in workflow.nodes if n.key not in incoming] or [workflow.nodes[0].key]
    roots += [n.key for n in workflow.nodes]  # then whatever the roots do not reach
    state: dict[str, int] = {}  # 1: on the path, 2: done
    back: set[tuple[str, str]] = set()
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(outgoing[root]))]
        while stack:
            key, following = stack[-1]
            step = next(following, None)
            if step is None:
                state[key] = 2
                stack.pop()
            elif state.get(step) == 1:
                back.add((key, step))
            elif step not in state:
                state[step] = 1
                stack.append((step, iter(outgoing[step])))
    return back


def _columns(
    keys: list[str], forward: dict[str, list[str]], incoming_count: dict[str, int]
) -> dict[str, int]:
    """Each node's column: the longest forward path from a node with no inputs."""
    column = dict.fromkeys(keys, 0)
    waiting = dict(incoming_count)
    ready = deque(key for key in keys if waiting[key] == 0)
    while ready:
        key = ready.popleft()
        for step in forward[key]:
            column[step] = max(column[step], column[key] + 1)
            waiting[step] -= 1
            if waiting[step] == 0:
                ready.append(step)
    return column


def _order(
    columns: list[list[str]], forward: dict[str, list[str]], backward: dict[str, list[str]]
) -> None:
    """Reorder each column by the mean place of its neighbours (in place)."""
    place: dict[str, int] = {}
    for column in columns:
        place.update((key, i) for i, key in enumerate(column))

    def sweep(order: range, neighbours: dict[str, list[str]]) -> None:
        for c in order:
            column = columns[c]

            def mean(key: str) -> float:
                near = neighbours[key]
                return sum(place[n] for n in near) / len(near) if near else place[key]

            column.sort(key=mean)
            place.update((key, i) for i, key in enumerate(column))

    for _ in range(SWEEPS // 2):
        sweep(range(1, len(columns)), backward)
        sweep(range(len(columns) - 2, -1, -1), forward)


def layout(workflow: prana.Workflow) -> Layout:
    """Where to draw ``workflow``'s nodes and connections."""
    keys = [node.key for node in workflow.nodes]
    nodes = {node.key: node for node in workflow.nodes}
    outgoing: dict[str, list[str]] = {key: [] for key in keys}
    for connection in workflow.connections:
        outgoing[connection.from_].append(connection.to)
    back = _back_edges(workflow, outgoing)
    forward: dict[str, list[str]] = {key: [] for key in keys}
    backward: dict[str, list[str]] = {key: [] for key in keys}
    inputs: dict[str, list[str]] = defaultdict(list)
    outputs: dict[str, list[str]] = defaultdict(list)
    for connection in workflow.connections:
        source, target = connection.from_, connection.to
        if connection.from_port not in outputs[source]:
            outputs[source].append(connection.from_port)
        if connection.to_port not in inputs[target]:
            inputs[target].append(connection.to_port)
        if (source, target) not in back and target not in forward[source]:
            forward[source].append(target)
            backward[target].append(source)
    column_of = _columns(keys, forward, {key: len(backward[key]) for key in keys})
    columns: list[list[str]] = [[] for _ in range(max(column_of.values(), default=0) + 1)]
    for key in keys:
        columns[column_of[key]].append(key)
    _order(columns, forward, backward)

    boxes: dict[str, Box] = {}
    heights = []
    for c, column in enumerate(columns):
        y = MARGIN
        for key in column:
            ports_in = inputs.get(key) or ["main"]
            ports_out = outputs.get(key) or ["main"]
            height = HEADER + PORT_STEP * max(len(ports_in), len(ports_out)) + 6
            boxes[key] = Box(
                node=nodes[key],
                x=MARGIN + c * (NODE_WIDTH + COLUMN_GAP),
                y=y,
                width=NODE_WIDTH,
                height=height,
                inputs={p: HEADER + PORT_STEP * (i + 0.5) for i, p in enumerate(ports_in)},
                outputs={p: HEADER + PORT_STEP * (i + 0.5) for i, p in enumerate(ports_out)},
                column=c,
            )
            y += height + ROW_GAP
        heights.append(y)
    tallest = max(heights, default=MARGIN)
    # Centre each column on the tallest one.
    for c, column in enumerate(columns):
        shift = (tallest - heights[c]) / 2
        for key in column:
            boxes[key] = attrs.evolve(boxes[key], y=boxes[key].y + shift)
    edges = []
    for connection in workflow.connections:
        tail, head = boxes[connection.from_], boxes[connection.to]
        start = (tail.x + tail.width, tail.y + tail.outputs[connection.from_port])
        end = (head.x, head.y + head.inputs[connection.to_port])
        edges.append(Edge(connection, start, end, (connection.from_, connection.to) in back))
    width = MARGIN * 2 + len(columns) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    below = 30.0 if back else 0.0  # room for the loops drawn under their nodes
    return Layout(boxes, edges, width, tallest + below)
