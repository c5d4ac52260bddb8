"""Where data flows: readiness, dead-path elimination and loops (DESIGN §5.1, §5.4).

:class:`Flow` holds the per-edge and per-node bookkeeping of one execution and the
rules that move it when a node finishes. It is the part of the state machine that
decides *which* nodes are ready, skipped, or run again (with how many times each
ran, and which runs a loop entry collects); :class:`ExecutionMachine` owns one and
decides *how* they run. Pure and synchronous, like the machine; it changes only
through its own methods, and saves and restores its own part of a checkpoint's
routing state (see :mod:`prana._snapshot`).

Every node and edge is numbered once by the compiler, so the bookkeeping is in
lists indexed by those numbers. A node's readiness is two counters (edges settled,
edges delivered) compared with its in-degree. Work created while processing one
event goes on work lists (nodes to skip, loops that settled) that
:meth:`Flow.propagate` drains, so long chains of skips never recurse.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._blocks import BLOCK_BITS, BLOCKED_FORMAT, WHOLE_FORMAT, block_count
from ._commands import Command
from ._compiler import CompiledNode, Edge, ExecutionGraph
from ._errors import InternalError
from ._journal import Journal
from ._records import ErrorInfo, NodeRun

# Node states within the current iteration of the loops around it.
PENDING, READY, RUNNING, DONE, SKIPPED, SUSPENDED = range(6)
# Edge states.
OPEN, DELIVERED, DEAD = range(3)
# What an edge holds for checkpoints while it is open (dead is -1; delivered, the
# sending run's execution index).
OPEN_REF = -2
_ZERO = (0,)
# Node states as the digits of the "nodes" string.
_DIGITS = bytes.maketrans(bytes(range(10)), b"0123456789")
# Finds a run of the audit trail by its execution index.
RunLookup = Callable[[int], NodeRun]


class Flow:
    """Edge and node bookkeeping of one execution, and the rules that move it."""

    def __init__(self, graph: ExecutionGraph, journal: Journal) -> None:
        self.graph = graph
        # Loop iterations started in this execution (``settings.max_iterations``).
        self.iteration_count = 0
        self._journal = journal
        nodes = graph.order
        count = len(nodes)
        self._nodes = nodes
        self._index = graph.index
        # Numbers in arrays rather than lists: the garbage collector does not scan
        # them, which matters with thousands of executions in memory.
        self._state = bytearray(count)  # PENDING
        self._settled = array("l", _ZERO) * count
        self._delivered = array("l", _ZERO) * count
        self._back_settled = array("l", _ZERO) * count
        self._back_delivered = array("l", _ZERO) * count
        self._run_counts = array("l", _ZERO) * count
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
        # A loop entry's run index when its loop was last entered from outside, and
        # a collecting entry's runs since then (core.for_each), by node index.
        self._activation: dict[int, int] = {}
        self._entry_runs: dict[int, list[int]] = {}
        self._skipped: dict[str, None] = {}
        self._max_iterations = graph.workflow.settings.max_iterations

        # Work lists of the event being processed.
        self._activated: list[int] = []
        self._to_skip: deque[int] = deque()
        self._quiescent: list[int] = []

    # ------------------------------------------------------------------ nodes

    def started(self, trigger: int) -> None:
        """The execution starts at node ``trigger``: it is ready."""
        self.set_state(trigger, READY)
        self._activated.append(trigger)

    def state(self, index: int) -> int:
        """Node ``index``'s state in the current iteration of its loops."""
        return self._state[index]

    def set_state(self, index: int, state: int) -> None:
        """Node ``index`` is now in ``state`` (its block of the routing state changed)."""
        self._state[index] = state
        self._blocks_changed.add(index >> BLOCK_BITS)

    def nodes_in(self, *states: int) -> list[int]:
        """The nodes in one of ``states``, by index."""
        return [index for index, state in enumerate(self._state) if state in states]

    def count_run(self, index: int) -> int:
        """A new run of node ``index`` starts: its run index."""
        run_index = self._run_counts[index]
        self._run_counts[index] = run_index + 1
        return run_index

    @property
    def skipped(self) -> list[str]:
        """Keys of the nodes skipped so far, in skip order (a node skipped in several
        iterations of a loop once)."""
        return list(self._skipped)

    def is_skipped(self, key: str) -> bool:
        """Whether node ``key`` was skipped (in this or an earlier iteration)."""
        return key in self._skipped

    def never_ran(self) -> list[str]:
        """Keys of the nodes that were skipped and have not run at all, in skip order."""
        return [key for key in self._skipped if not self._run_counts[self._index[key]]]

    # ------------------------------------------------------------------ loops seen by runs

    def take_loop_inputs(self, index: int) -> list[tuple[Edge, NodeRun]] | None:
        """What came back to loop entry ``index`` when its loop's next iteration
        started it (``None``: it was not started by a loop-back connection)."""
        return self._loop_inputs.pop(index, None)

    def entered(self, index: int, run_index: int) -> None:
        """Loop entry ``index`` was entered from outside its loop by run ``run_index``:
        a collecting entry collects anew."""
        self._activation[index] = run_index
        self._entry_runs.pop(index, None)

    def is_loop_back(self, index: int, run_index: int) -> bool:
        """Whether run ``run_index`` of loop entry ``index`` came over a loop-back
        connection (it is not the run that entered the loop)."""
        return self._activation.get(index) != run_index

    def iteration(self, index: int) -> int:
        """The iteration (0, 1, ...) of the loop entered at ``index`` that its latest
        run started."""
        return self._run_counts[index] - 1 - self._activation.get(index, 0)

    def collect(self, index: int, execution_index: int) -> None:
        """A collecting loop entry ``index`` (core.for_each) started a run over a
        loop-back connection (what came back on it is an iteration's result)."""
        self._entry_runs.setdefault(index, []).append(execution_index)

    def recollect(self, index: int, before: int, now: int) -> None:
        """A collecting entry's run ``before`` goes on as run ``now`` (a retry)."""
        runs = self._entry_runs.get(index)
        if runs is not None:
            runs[runs.index(before)] = now

    def collected(self, index: int) -> list[int]:
        """The execution indexes of collecting loop entry ``index``'s runs over
        loop-back connections since its loop was entered, in run order."""
        return self._entry_runs.get(index, [])

    def collecting(self) -> list[int]:
        """The collecting loop entries with runs collected, by index."""
        return list(self._entry_runs)

    # ------------------------------------------------------------------ events

    def node_ended(self, node: CompiledNode, port: str, run: NodeRun) -> None:
        """Node ``node``'s run ended and goes on through ``port``: the edges on that
        port deliver ``run``, the others die, and the node settles in its loops."""
        self._route(node, port, run)
        self._settle(node.index)

    def propagate(self, commands: list[Command], now: float) -> ErrorInfo | None:
        """Skip what can no longer run and settle the loops that came to rest; the
        error that ends the execution if a loop went past its limit."""
        to_skip, quiescent = self._to_skip, self._quiescent
        while to_skip or quiescent:
            if to_skip:
                self._skip(to_skip.popleft(), commands, now)
                continue
            quiescent.sort(key=self._loop_depth.__getitem__)
            loop_id = quiescent.pop()
            if self._unsettled[loop_id] == 0:
                error = self._loop_settled(loop_id)
                if error is not None:
                    return error
        return None

    @property
    def has_work(self) -> bool:
        """Whether the event being processed left nodes to skip, loops to settle or
        nodes made ready."""
        return bool(self._to_skip or self._quiescent or self._activated)

    def take_activated(self) -> list[int]:
        """The nodes made ready since last asked, in the order to push them on the
        ready stack (the first made ready ends on top)."""
        activated = self._activated
        if not activated:
            return []
        self._activated = []
        activated.reverse()
        return activated

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

    def _skip(self, index: int, commands: list[Command], now: float) -> None:
        node = self._nodes[index]
        self._skipped[node.key] = None
        self._journal.skipped(commands, now, node.key)
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

    def _loop_settled(self, loop_id: int) -> ErrorInfo | None:
        loop = self.graph.loops[loop_id]
        entry = self._index[loop.entry]
        back_edges = self._nodes[entry].back_edges
        if self._back_delivered[entry] and self._back_settled[entry] == len(back_edges):
            if self.iteration_count >= self._max_iterations:
                # The iteration past the limit does not start, and is not counted.
                return ErrorInfo(
                    code="loop_limit_exceeded",
                    message=f"the loop at {loop.entry!r} went past settings.max_iterations "
                    f"({self._max_iterations}) loop iterations in this execution; check its exit "
                    "condition, or raise settings.max_iterations",
                    details={"max_iterations": self._max_iterations, "loop_entry": loop.entry},
                    node_key=loop.entry,
                )
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
            return None
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
        return None

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

    # ------------------------------------------------------------------ checkpoints

    def dump(self, paths: dict[str, Any], *, whole: bool) -> None:
        """Put this part of the routing state in ``paths`` (see :mod:`prana._snapshot`):
        node states, edges and run counts (in blocks in a large workflow, unless
        ``whole``), and whatever the loops and the event being processed hold."""
        if self._blocks and not whole:
            paths["format"] = BLOCKED_FORMAT
            paths["blocks"] = self._blocks
        else:
            paths["format"] = WHOLE_FORMAT
            paths["nodes"] = self._state.translate(_DIGITS).decode()
            paths["edges"] = tuple(self._edge_refs)
            paths["run_counts"] = tuple(self._run_counts)
        if any(self._exit_buffer):
            paths["exits"] = {
                str(loop): {str(edge): run.execution_index for edge, run in buffer.items()}
                for loop, buffer in enumerate(self._exit_buffer)
                if buffer
            }
        if self._loop_inputs:
            paths["loop_inputs"] = {
                str(node): [[edge.index, run.execution_index] for edge, run in entries]
                for node, entries in self._loop_inputs.items()
            }
        if self._activation:
            paths["activation"] = {
                str(node): run_index for node, run_index in self._activation.items()
            }
        if self._skipped:
            paths["skipped"] = list(self._skipped)
        # Rarely anything: work left when the execution failed mid-event, kept so that
        # a retry carries on exactly.
        if self._to_skip:
            paths["to_skip"] = list(self._to_skip)
        if self._quiescent:
            paths["quiescent"] = list(self._quiescent)
        if self._activated:
            paths["activated"] = list(self._activated)

    def dump_blocks(self, *, every: bool, completed: bool) -> dict[int, Any]:
        """The blocks a checkpoint saves: none in a small workflow; ``every`` one or
        those changed since the last checkpoint; once the execution has ``completed``,
        every one as ``None`` (nothing will run again: the store drops them)."""
        changed = self._blocks_changed
        count = self._blocks
        if not count:
            changed.clear()
            return {}
        if completed:
            changed.clear()
            return {} if every else dict.fromkeys(range(count))
        numbers = range(count) if every else sorted(changed)
        changed.clear()
        states, edges, run_counts = self._state, self._edge_refs, self._run_counts
        blocks: dict[int, Any] = {}
        for number in numbers:
            start = number << BLOCK_BITS
            end = start + (1 << BLOCK_BITS)
            blocks[number] = {
                "nodes": states[start:end].translate(_DIGITS).decode(),
                "edges": tuple(edges[start:end]),
                "run_counts": tuple(run_counts[start:end]),
            }
        return blocks

    def all_changed(self) -> None:
        """The next checkpoint saves every block (a state saved whole, or made anew)."""
        self._blocks_changed.update(range(self._blocks))

    @staticmethod
    def runs_named(paths: Mapping[str, Any]) -> set[int]:
        """The runs this part of a saved routing state (blocks joined) names, which
        :meth:`restore` looks up: those that sent on settled edges, and those waiting
        at a loop's exit or entry."""
        edges = paths["edges"]
        found = {int(source) for source in (edges.values() if isinstance(edges, dict) else edges)}
        for buffer in paths.get("exits", {}).values():
            found.update(int(source) for source in buffer.values())
        for entries in paths.get("loop_inputs", {}).values():
            found.update(int(source) for _, source in entries)
        return {index for index in found if index >= 0}

    def restore(self, paths: Mapping[str, Any], runs: Iterable[NodeRun], run: RunLookup) -> None:
        """Take this part of a saved routing state (blocks joined already); ``runs``
        are the audit trail's runs held, ``run`` finds one by execution index.
        Raises :class:`InternalError` if it does not fit the workflow."""
        graph = self.graph
        states = paths["nodes"]
        if len(states) != len(graph.order) or len(paths["run_counts"]) != len(graph.order):
            raise InternalError("the saved state does not match its workflow")
        self._state = bytearray(int(char) for char in states)
        self._run_counts = array("l", paths["run_counts"])
        self._activation = {int(node): start for node, start in paths.get("activation", {}).items()}
        for held in runs:
            index = self._index[held.node_key]
            node = self._nodes[index]
            if (
                held.status != "retried"  # an attempt that failed: the run goes on
                and node.back_edges
                and node.action.collect_port is not None
                and held.run_index > self._activation.get(index, 0)
            ):
                self._entry_runs.setdefault(index, []).append(held.execution_index)
        self._skipped = dict.fromkeys(paths.get("skipped", ()))
        self._to_skip.extend(paths.get("to_skip", ()))
        self._quiescent.extend(paths.get("quiescent", ()))
        self._activated.extend(paths.get("activated", ()))
        edges = paths["edges"]
        if isinstance(edges, dict):  # format 1: only the settled edges, by index
            edges = [edges.get(str(position), OPEN_REF) for position in range(len(graph.edges))]
        if len(edges) != len(graph.edges):
            raise InternalError("the saved state does not match its workflow")
        for position, source in enumerate(edges):
            if source == OPEN_REF:
                continue
            self._edge_refs[position] = source
            if source < 0:
                self._edge_state[position] = DEAD
            else:
                self._edge_state[position] = DELIVERED
                self._edge_run[position] = run(source)
        for loop, buffer in paths.get("exits", {}).items():
            self._exit_buffer[int(loop)] = {
                int(edge): run(source) for edge, source in buffer.items()
            }
        self._loop_inputs = {
            int(node): [(graph.edges[edge], run(source)) for edge, source in entries]
            for node, entries in paths.get("loop_inputs", {}).items()
        }
        self._recount()

    def restore_completed(self, runs: Iterable[NodeRun], skipped: Iterable[str]) -> None:
        """A completed execution's state from its runs and the nodes it skipped (all
        a completed execution's checkpoint keeps)."""
        for held in runs:
            index = self._index[held.node_key]
            self._run_counts[index] = max(self._run_counts[index], held.run_index + 1)
            if held.status in ("completed", "failed"):
                self._state[index] = DONE
        self._skipped = dict.fromkeys(skipped)
        for key in self._skipped:
            index = self._index[key]
            if self._state[index] != DONE:
                self._state[index] = SKIPPED

    def _recount(self) -> None:
        """Edges settled and delivered per node, nodes unsettled per loop: one pass."""
        edge_state = self._edge_state
        index_of = self._index
        for edge in self.graph.edges:
            state = edge_state[edge.index]
            if state == OPEN:
                continue
            target = index_of[edge.target]
            if edge.loop_back:
                self._back_settled[target] += 1
                self._back_delivered[target] += state == DELIVERED
            else:
                self._settled[target] += 1
                self._delivered[target] += state == DELIVERED
        states = self._state
        for loop in self.graph.loops:
            self._unsettled[loop.id] = sum(
                states[index_of[key]] not in (DONE, SKIPPED) for key in loop.nodes
            )
