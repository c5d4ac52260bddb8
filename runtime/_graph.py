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

import attrs


@attrs.frozen(kw_only=True)
class GraphEdge:
    """An edge as the algorithms see it: its connection index and its endpoints."""

    index: int
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


def find_loops(
    nodes: Sequence[str], edges: Sequence[GraphEdge]
) -> tuple[list[LoopShape], list[LoopEntryConflict]]:
    """The loops of a graph, outermost first, and the loops entered at several nodes.

    ``nodes`` is in definition order, which decides the order of loops and entries.
    """
    order = {node: position for position, node in enumerate(nodes)}
    loops: list[LoopShape] = []
    conflicts: list[LoopEntryConflict] = []
    removed: set[int] = set()

    def analyse(members: Sequence[str], parent: int | None) -> None:
        member_set = set(members)
        active = [
            e
            for e in edges
            if e.index not in removed and e.source in member_set and e.target in member_set
        ]
        for component in strongly_connected_components(members, active):
            component_set = set(component)
            if len(component) == 1 and not any(
                e.source == e.target == component[0] for e in active
            ):
                continue
            entering = [
                e
                for e in edges
                if e.index not in removed
                and e.target in component_set
                and e.source not in component_set
            ]
            entries = sorted({e.target for e in entering}, key=order.__getitem__)
            if not entries:
                continue  # nothing leads into it: unreachable, reported as such
            if len(entries) > 1:
                conflicts.append(
                    LoopEntryConflict(
                        nodes=tuple(sorted(component, key=order.__getitem__)),
                        entries=tuple(entries),
                        edges=tuple(sorted(e.index for e in entering if e.target != entries[0])),
                    )
                )
                continue
            entry = entries[0]
            back_edges = tuple(
                sorted(e.index for e in active if e.target == entry and e.source in component_set)
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


def loop_chain(node: str, loops: Sequence[LoopShape]) -> list[int]:
    """Indexes of the loops containing ``node``, innermost first."""
    containing = [index for index, loop in enumerate(loops) if node in loop.nodes]
    return sorted(containing, key=lambda index: len(loops[index].nodes))


def exit_scope(source: str, target: str, loops: Sequence[LoopShape]) -> int | None:
    """The outermost loop an edge leaves (contains ``source`` but not ``target``)."""
    left = [index for index in loop_chain(source, loops) if target not in loops[index].nodes]
    return left[-1] if left else None
