"""Where data flows: readiness, dead-path elimination and loops (DESIGN §5.1, §5.4).

:class:`Flow` holds the per-edge and per-node bookkeeping of one execution and the
rules that move it when a node finishes. It is the part of the state machine that
decides *which* nodes are ready, skipped, or run again; :class:`ExecutionMachine`
builds on it to decide *how* they run. Pure and synchronous, like the machine.

Every node and edge is numbered once by the compiler, so the bookkeeping is in
lists indexed by those numbers. A node's readiness is two counters (edges settled,
edges delivered) compared with its in-degree. Work created while processing one
event goes on work lists (nodes to skip, loops that settled) that
:meth:`Flow._propagate` drains, so long chains of skips never recurse.
"""

from __future__ import annotations

from array import array
from collections import deque

from ._blocks import BLOCK_BITS, block_count
from ._commands import Command
from ._compiler import CompiledNode, Edge, ExecutionGraph
from ._errors import InternalError
from ._journal import Journal
from ._records import ErrorInfo, ExecutionStatus, NodeRun

# Node states within the current iteration of the loops around it.
PENDING, READY, RUNNING, DONE, SKIPPED, SUSPENDED = range(6)
# Edge states.
OPEN, DELIVERED, DEAD = range(3)
# What an edge holds for checkpoints while it is open (dead is -1; delivered, the
# sending run's execution index).
OPEN_REF = -2
_ZERO = (0,)


class Flow:
    """Edge and node bookkeeping of one execution, and the rules that move it."""

    status: ExecutionStatus
    journal: Journal
    _now: float

    def __init__(self, graph: ExecutionGraph) -> None:
        self.graph = graph
        self.iteration_count = 0
        nodes = graph.order
        count = len(nodes)
        self._nodes = nodes
        self._index = {node.key: node.index for node in nodes}
        # Numbers in arrays rather than lists: the garbage collector does not scan
        # them, which matters with thousands of executions in memory.
        self._state = bytearray(count)  # PENDING
        self._settled = array("l", _ZERO) * count
        self._delivered = array("l", _ZERO) * count
        self._back_settled = array("l", _ZERO) * count
        self._back_delivered = array("l", _ZERO) * count
        self._edge_state = bytearray(len(graph.edges))  # OPEN
        self._edge_run: list[NodeRun | None] = [None] * len(graph.edges)
        # Edges for checkpoints: the sending run's execution index (delivered), -1
        # (dead) or OPEN_REF. Kept as edges settle, so saving never scans.
        self._edge_refs = array("l", (OPEN_REF,)) * len(graph.edges)
        # A large workflow's node states, edges and run counts are saved in blocks
        # (see :mod:`._blocks`): the numbers of the blocks changed since the last
        # checkpoint. Kept for every workflow (a small one has just block 0): a set
        # addition costs less than asking whether it is needed.
        self._blocks = block_count(count, len(graph.edges))
        self._blocks_changed: set[int] = set()
        self._unsettled = array("l", [len(loop.nodes) for loop in graph.loops])
        self._exit_buffer: list[dict[int, NodeRun]] = [{} for _ in graph.loops]
        self._loop_depth = tuple(self._depth(loop.id) for loop in graph.loops)
        self._loop_inputs: dict[int, list[tuple[Edge, NodeRun]]] = {}
        self._skipped: dict[str, None] = {}
        self._max_iterations = graph.workflow.settings.max_iterations

        # Work lists of the event being processed.
        self._commands: list[Command] = []
        self._activated: list[int] = []
        self._to_skip: deque[int] = deque()
        self._quiescent: list[int] = []

    def _fail_execution(self, error: ErrorInfo) -> None:
        raise NotImplementedError  # the machine decides what failing means

    def _propagate(self) -> None:
        to_skip, quiescent = self._to_skip, self._quiescent
        while self.status == "running" and (to_skip or quiescent):
            if to_skip:
                self._skip(to_skip.popleft())
                continue
            quiescent.sort(key=self._loop_depth.__getitem__)
            loop_id = quiescent.pop()
            if self._unsettled[loop_id] == 0:
                self._loop_settled(loop_id)

    def _route(self, node: CompiledNode, port: str, run: NodeRun) -> None:
        for edge_port, edges in node.outgoing:
            if edge_port == port:
                for edge in edges:
                    if edge.exit_scope is not None:
                        self._exit_buffer[edge.exit_scope][edge.index] = run
                    else:
                        self._deliver(edge, run)
            else:
                for edge in edges:
                    if edge.exit_scope is None:
                        self._kill(edge)

    def _deliver(self, edge: Edge, run: NodeRun) -> None:
        self._edge_state[edge.index] = DELIVERED
        self._edge_run[edge.index] = run
        self._edge_refs[edge.index] = run.execution_index
        self._blocks_changed.add(edge.index >> BLOCK_BITS)
        target = self._index[edge.target]
        if edge.loop_back:
            self._back_settled[target] += 1
            self._back_delivered[target] += 1
            return
        self._settled[target] += 1
        self._delivered[target] += 1
        self._check(target)

    def _kill(self, edge: Edge) -> None:
        self._edge_state[edge.index] = DEAD
        self._edge_refs[edge.index] = -1
        self._blocks_changed.add(edge.index >> BLOCK_BITS)
        target = self._index[edge.target]
        if edge.loop_back:
            self._back_settled[target] += 1
            return
        self._settled[target] += 1
        self._check(target)

    def set_state(self, index: int, state: int) -> None:
        """Node ``index`` is now in ``state`` (its block of the routing state changed)."""
        self._state[index] = state
        self._blocks_changed.add(index >> BLOCK_BITS)

    def delivered_to(self, node: CompiledNode) -> list[tuple[Edge, NodeRun]]:
        """The connections into ``node`` that delivered, with the run that sent on each."""
        edge_state, edge_run = self._edge_state, self._edge_run
        delivered = []
        for edge in node.incoming:
            if edge_state[edge.index] == DELIVERED:
                source_run = edge_run[edge.index]
                assert source_run is not None
                delivered.append((edge, source_run))
        return delivered

    def settle_made_state(self) -> None:
        """After a state made outside the machine (a rerun's): every node whose inputs
        have all settled becomes ready or is skipped, by the rule the machine applies
        as edges settle, and in the same order (decision 0053)."""
        for node in self._nodes:
            if not node.is_trigger:
                self._check(node.index)

    def _check(self, index: int) -> None:
        if self._state[index] != PENDING:
            return
        node = self._nodes[index]
        all_settled = self._settled[index] == len(node.incoming)
        if self._delivered[index] and (all_settled or node.join_any):
            self._state[index] = READY
            self._activated.append(index)
        elif all_settled:
            self._state[index] = SKIPPED
            self._to_skip.append(index)
        else:
            return
        self._blocks_changed.add(index >> BLOCK_BITS)

    def _skip(self, index: int) -> None:
        node = self._nodes[index]
        self._skipped[node.key] = None
        self.journal.skipped(self._commands, self._now, node.key)
        for _, edges in node.outgoing:
            for edge in edges:
                if edge.exit_scope is None:
                    self._kill(edge)
        self._settle(index)

    # ------------------------------------------------------------------ loops

    def _depth(self, loop_id: int) -> int:
        depth, parent = 0, self.graph.loops[loop_id].parent
        while parent is not None:
            depth, parent = depth + 1, self.graph.loops[parent].parent
        return depth

    def _settle(self, index: int) -> None:
        unsettled = self._unsettled
        for loop_id in self._nodes[index].loops:
            unsettled[loop_id] -= 1
            if unsettled[loop_id] == 0:
                self._quiescent.append(loop_id)

    def _loop_settled(self, loop_id: int) -> None:
        loop = self.graph.loops[loop_id]
        entry = self._index[loop.entry]
        back_edges = self._nodes[entry].back_edges
        if self._back_delivered[entry] and self._back_settled[entry] == len(back_edges):
            if self.iteration_count >= self._max_iterations:
                # The iteration past the limit does not start, and is not counted.
                self._fail_execution(
                    ErrorInfo(
                        code="loop_limit_exceeded",
                        message=f"the loop at {loop.entry!r} went past settings.max_iterations "
                        f"({self._max_iterations}) loop iterations in this execution; check its exit "
                        "condition, or raise settings.max_iterations",
                        details={"max_iterations": self._max_iterations, "loop_entry": loop.entry},
                        node_key=loop.entry,
                    )
                )
                return
            self.iteration_count += 1
            deliveries = []
            for edge in back_edges:
                if self._edge_state[edge.index] == DELIVERED:
                    source_run = self._edge_run[edge.index]
                    assert source_run is not None
                    deliveries.append((edge, source_run))
            self._reset_loop(loop_id)
            self._loop_inputs[entry] = deliveries
            self._state[entry] = READY
            self._blocks_changed.add(entry >> BLOCK_BITS)
            self._activated.append(entry)
            return
        if self._back_settled[entry] != len(back_edges):
            raise InternalError(f"loop at {loop.entry!r} settled with loop-back edges still open")
        buffer = self._exit_buffer[loop_id]
        edges = self.graph.edges
        for edge_index in loop.exit_edges:
            edge = edges[edge_index]
            sent = buffer.pop(edge_index, None)
            if sent is not None:
                self._deliver(edge, sent)
            else:
                self._kill(edge)

    def _reset_loop(self, loop_id: int) -> None:
        graph = self.graph
        loop = graph.loops[loop_id]
        entry = self._index[loop.entry]
        changed = self._blocks_changed
        for key in loop.nodes:
            index = self._index[key]
            self._state[index] = PENDING
            changed.add(index >> BLOCK_BITS)
            self._back_settled[index] = self._back_delivered[index] = 0
            if index != entry:
                self._settled[index] = self._delivered[index] = 0
        for edge_index in loop.inside_edges:
            self._edge_state[edge_index] = OPEN
            self._edge_refs[edge_index] = OPEN_REF
            changed.add(edge_index >> BLOCK_BITS)
            self._edge_run[edge_index] = None
        size = len(loop.nodes)
        self._unsettled[loop_id] = size
        for inner in loop.descendants:
            self._unsettled[inner] = len(graph.loops[inner].nodes)
            self._exit_buffer[inner].clear()
        parent = loop.parent
        while parent is not None:
            self._unsettled[parent] += size
            parent = graph.loops[parent].parent
