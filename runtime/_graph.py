"""Graph algorithms for the compiler: reachability, strongly connected components and
loop structure (DESIGN §5.4).

A loop is a strongly connected component. Its *entry* is the one node of the
component that connections from outside lead into; its *loop-back* edges are the
edges from inside the component into the entry. Removing them leaves either an
acyclic component or smaller loops inside it (nested loops), found the same way.
Every other node of a loop takes connections from inside the loop only; a loop
entered at several nodes is ambiguous and reported as a problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import attrs


class GraphEdge(NamedTuple):
    """An edge as the algorithms see it: its number (the connection's index) and its
    endpoints (a named tuple: graphs of many thousands of edges are built in one go)."""

    number: int
    source: str
    target: str


@attrs.frozen(kw_only=True)
class LoopShape:
    """One loop found in a graph, before compilation attaches it to nodes."""

    entry: str
    nodes: frozenset[str]
    back_edges: tuple[int, ...]
    parent: int | None  # index of the enclosing loop in the result list


@attrs.frozen(kw_only=True)
class LoopEntryConflict:
    """A loop entered from outside at more than one node."""

    nodes: tuple[str, ...]
    entries: tuple[str, ...]
    edges: tuple[int, ...]  # edges from outside into the entries after the first


def reachable_from(start: str, edges: Iterable[GraphEdge]) -> set[str]:
    """Every node reachable from ``start`` (``start`` included)."""
    successors: dict[str, list[str]] = {}
    for edge in edges:
        successors.setdefault(edge.source, []).append(edge.target)
    seen = {start}
    stack = [start]
    while stack:
        for target in successors.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def strongly_connected_components(
    nodes: Sequence[str], edges: Iterable[GraphEdge]
) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components come out in reverse topological order."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for edge in edges:
        if edge.source in successors and edge.target in successors:
            successors[edge.source].append(edge.target)
    index_of: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index_of:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_position = work.pop()
            if child_position == 0:
                index_of[node] = lowlink[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = successors[node]
            descended = False
            for position in range(child_position, len(children)):
                child = children[position]
                if child not in index_of:
                    work.append((node, position + 1))
                    work.append((child, 0))
                    descended = True
                    break
                if child in on_stack:
                    lowlink[node] = min(lowlink[node], index_of[child])
            if descended:
                continue
            if lowlink[node] == index_of[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
    return components


def is_acyclic(nodes: Sequence[str], edges: Iterable[GraphEdge]) -> bool:
    """Whether the graph has no cycle (Kahn's algorithm: every node can be taken away
    once nothing leads into it)."""
    known = set(nodes)
    waiting = dict.fromkeys(nodes, 0)
    successors: dict[str, list[str]] = {}
    for edge in edges:
        if edge.source in known and edge.target in known:
            waiting[edge.target] += 1
            successors.setdefault(edge.source, []).append(edge.target)
    free = [node for node, count in waiting.items() if count == 0]
    taken = 0
    while free:
        taken += 1
        for target in successors.get(free.pop(), ()):
            waiting[target] -= 1
            if waiting[target] == 0:
                free.append(target)
    return taken == len(waiting)


def find_loops(
    nodes: Sequence[str], edges: Sequence[GraphEdge]
) -> tuple[list[LoopShape], list[LoopEntryConflict]]:
    """The loops of a graph, outermost first, and the loops entered at several nodes.

    ``nodes`` is in definition order, which decides the order of loops and entries.
    """
    if is_acyclic(nodes, edges):
        return [], []  # most workflows: no component to look for
    order = {node: position for position, node in enumerate(nodes)}
    loops: list[LoopShape] = []
    conflicts: list[LoopEntryConflict] = []
    removed: set[int] = set()

    def analyse(members: Sequence[str], parent: int | None) -> None:
        member_set = set(members)
        active = [
            e
            for e in edges
            if e.number not in removed and e.source in member_set and e.target in member_set
        ]
        self_looped = {e.source for e in active if e.source == e.target}
        # Edges into each node, from anywhere (the ones not removed yet): a component's
        # entering edges are found from its members, never by scanning every edge.
        into: dict[str, list[GraphEdge]] = {}
        for e in edges:
            if e.number not in removed and e.target in member_set:
                into.setdefault(e.target, []).append(e)
        for component in strongly_connected_components(members, active):
            if len(component) == 1 and component[0] not in self_looped:
                continue
            component_set = set(component)
            entering = [
                e
                for member in component
                for e in into.get(member, ())
                if e.source not in component_set
            ]
            entries = sorted({e.target for e in entering}, key=order.__getitem__)
            if not entries:
                continue  # nothing leads into it: unreachable, reported as such
            if len(entries) > 1:
                conflicts.append(
                    LoopEntryConflict(
                        nodes=tuple(sorted(component, key=order.__getitem__)),
                        entries=tuple(entries),
                        edges=tuple(sorted(e.number for e in entering if e.target != entries[0])),
                    )
                )
                continue
            entry = entries[0]
            back_edges = tuple(
                sorted(e.number for e in into.get(entry, ()) if e.source in component_set)
            )
            loops.append(
                LoopShape(
                    entry=entry, nodes=frozenset(component), back_edges=back_edges, parent=parent
                )
            )
            removed.update(back_edges)
            analyse(sorted(component, key=order.__getitem__), len(loops) - 1)

    analyse(list(nodes), None)
    return loops, conflicts


def loop_chains(loops: Sequence[LoopShape]) -> dict[str, list[int]]:
    """For each node in a loop, the indexes of the loops containing it, innermost
    first (a node in no loop is not a key)."""
    chains: dict[str, list[int]] = {}
    for index, loop in enumerate(loops):
        for node in loop.nodes:
            chains.setdefault(node, []).append(index)
    for chain in chains.values():
        chain.sort(key=lambda index: len(loops[index].nodes))
    return chains


def exit_scope(
    source: str, target: str, loops: Sequence[LoopShape], chains: dict[str, list[int]]
) -> int | None:
    """The outermost loop an edge leaves (contains ``source`` but not ``target``);
    ``chains`` is :func:`loop_chains` of ``loops``."""
    chain = chains.get(source)
    if chain is None:
        return None  # the source is in no loop (most edges)
    left = [index for index in chain if target not in loops[index].nodes]
    return left[-1] if left else None
