"""Property tests: the compiler and the state machine on generated workflows."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prana
from prana._blocks import BLOCK, joined
from prana._commands import Dispatch
from prana._records import Checkpoint, NodeResult, StoredExecution
from prana.events import NodeSkipped

ACTIONS = prana.ActionRegistry()


@ACTIONS.action("test.pick", outputs=("a", "b", "c"), default_port="a")
def pick(ctx: prana.NodeContext) -> prana.Output:
    """Sends its input on the port named by params.port."""
    return prana.Output(ctx.input, port=ctx.params.get("port", "a"))


@ACTIONS.action("test.fail")
def fail(ctx: prana.NodeContext) -> Any:
    """Always fails."""
    raise prana.NodeError("planned failure", code="planned")


# --------------------------------------------------------------------------- compiler

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=6))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
keys = st.sampled_from(["start", "a", "b", "c", "d", "", "bad key", "a"])
types = st.sampled_from(
    [
        "manual.trigger",
        "core.noop",
        "logic.if",
        "logic.switch",
        "data.merge",
        "core.for_each",
        "data.set",
        "nope.x",
        "logic.iff",
        "",
    ]
)
ports = st.sampled_from(["main", "true", "false", "loop", "done", "default", "error", "x", ""])
params = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "condition": st.sampled_from(
                [True, "{{ input.x }}", "{{ nodes.a.output }}", "{{ bad", "{{ nosuch }}"]
            ),
            "items": st.sampled_from([[1, 2], "{{ input }}", 3]),
            "values": json_values,
            "cases": st.lists(
                st.dictionaries(st.sampled_from(["port", "equals", "in", "x"]), json_scalars),
                max_size=3,
            ),
            "strategy": st.sampled_from(["append", "merge", "zip"]),
            "batch_size": st.sampled_from([1, 0, "x"]),
        },
    ),
)
node = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"key": st.one_of(keys, st.integers()), "type": st.one_of(types, st.integers())},
        optional={
            "params": params,
            "settings": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "on_error": st.sampled_from(["stop", "continue", "error_port", "x", None])
                    },
                ),
            ),
            "name": json_scalars,
        },
    ),
)
connection = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"from": st.one_of(keys, st.integers()), "to": keys},
        optional={"from_port": ports, "to_port": ports},
    ),
)
definition = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.text(max_size=5), st.integers()),
            "nodes": st.one_of(st.lists(node, max_size=6), json_values),
        },
        optional={
            "connections": st.one_of(st.lists(connection, max_size=8), json_values),
            "settings": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "concurrency": st.integers(-1, 3),
                        "max_iterations": st.integers(-1, 3),
                    },
                ),
            ),
            "variables": json_values,
            "version": st.one_of(st.integers(-1, 3), st.text(max_size=2)),
        },
    ),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(definition)
def test_any_definition_compiles_or_raises_a_validation_error(document: Any) -> None:
    # Objects are passed as dicts; anything else arrives as the text of a file would.
    source = document if isinstance(document, dict) else json.dumps(document) + "\n"
    try:
        workflow = prana.load_workflow(source, actions=ACTIONS)
        prana.lowlevel.compile_workflow(workflow, ACTIONS)
    except prana.WorkflowValidationError as error:
        problems = error.problems
    else:
        return
    assert problems
    assert all(isinstance(problem.message, str) and problem.message for problem in problems)


# --------------------------------------------------------------------------- state machine


@st.composite
def acyclic_workflows(
    draw: st.DrawFn, min_count: int = 2, max_count: int = 9
) -> tuple[dict[str, Any], int]:
    count = draw(st.integers(min_count, max_count))
    nodes: list[dict[str, Any]] = [{"key": "n0", "type": "manual.trigger"}]
    for index in range(1, count):
        kind = draw(st.sampled_from(["noop", "pick", "merge_any", "merge_all", "if", "fail"]))
        node: dict[str, Any] = {"key": f"n{index}"}
        if kind == "noop":
            node["type"] = "core.noop"
        elif kind == "pick":
            node.update(type="test.pick", params={"port": draw(st.sampled_from(["a", "b", "c"]))})
        elif kind == "merge_any":
            node.update(type="data.merge", params={"mode": "any"})
        elif kind == "merge_all":
            node.update(type="data.merge")
        elif kind == "if":
            node.update(type="logic.if", params={"condition": draw(st.booleans())})
        else:
            node.update(
                type="test.fail",
                settings={"on_error": draw(st.sampled_from(["stop", "continue", "error_port"]))},
            )
        nodes.append(node)
    output_ports = {
        "manual.trigger": ["main"], "core.noop": ["main"], "test.pick": ["a", "b", "c"],
        "data.merge": ["main"], "logic.if": ["true", "false"],
    }  # fmt: skip
    connections: list[dict[str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    for target in range(1, count):
        sources = draw(st.lists(st.integers(0, target - 1), min_size=1, max_size=3))
        for source in sources:
            source_node = nodes[source]
            choices = output_ports.get(source_node["type"], ["main"])
            if source_node["type"] == "test.fail":
                choices = (
                    ["error"] if source_node["settings"]["on_error"] == "error_port" else ["main"]
                )
            port = draw(st.sampled_from(choices))
            identity = (source_node["key"], port, f"n{target}")
            if identity not in seen:
                seen.add(identity)
                connections.append(
                    {"from": source_node["key"], "from_port": port, "to": f"n{target}"}
                )
    concurrency = draw(st.integers(1, 3))
    document = {
        "id": "generated",
        "nodes": nodes,
        "connections": connections,
        "settings": {"concurrency": concurrency},
    }
    return document, concurrency


def result_for(dispatch: Dispatch) -> NodeResult:
    run = dispatch.run
    try:
        value = dispatch.action.function(dispatch.context)
    except prana.NodeError as exc:
        return NodeResult(
            node_key=run.node_key,
            run_index=run.run_index,
            execution_index=run.execution_index,
            error=prana.ErrorInfo(code=exc.code, message=str(exc)),
        )
    data, port = (value.data, value.port) if isinstance(value, prana.Output) else (value, None)
    return NodeResult(
        node_key=run.node_key,
        run_index=run.run_index,
        execution_index=run.execution_index,
        data=data,
        port=port,
    )


@settings(max_examples=300, deadline=None)
@given(acyclic_workflows(), st.randoms(use_true_random=False))
def test_machine_runs_only_ready_nodes_and_always_ends(
    generated: tuple[dict[str, Any], int], random: Any
) -> None:
    document, concurrency = generated
    graph = prana.lowlevel.compile_workflow(prana.load_workflow(document, actions=ACTIONS), ACTIONS)
    machine = prana.lowlevel.ExecutionMachine(graph, execution_id="e", input={"x": 1})

    # An independent model of edge states: delivered, dead, or open.
    edge_state: dict[int, str] = {}
    ran: list[str] = []
    skipped: set[str] = set()

    def settle_outgoing(key: str, port: str | None) -> None:
        for outgoing_port, edges in graph.nodes[key].outgoing:
            for edge in edges:
                edge_state[edge.index] = "delivered" if outgoing_port == port else "dead"

    def observe(commands: list[Any]) -> list[Dispatch]:
        dispatched = []
        for command in commands:
            if isinstance(command, Dispatch):
                key = command.run.node_key
                node = graph.nodes[key]
                states = [edge_state.get(edge.index, "open") for edge in node.incoming]
                if not node.is_trigger:
                    assert "delivered" in states, f"{key} dispatched with nothing delivered"
                    if not node.join_any:
                        assert "open" not in states, f"{key} dispatched with inputs still open"
                assert key not in ran, f"{key} ran twice in an acyclic graph"
                ran.append(key)
                dispatched.append(command)
            elif isinstance(command, NodeSkipped):
                node = graph.nodes[command.node_key]
                assert all(edge_state.get(edge.index) == "dead" for edge in node.incoming)
                skipped.add(command.node_key)
                settle_outgoing(command.node_key, None)
        assert len(machine._running) <= concurrency
        return dispatched

    in_flight = observe(machine.start(0.0))
    steps = 0
    while in_flight:
        steps += 1
        assert steps <= 100, "the machine did not end"
        dispatch = in_flight.pop(random.randrange(len(in_flight)))
        result = result_for(dispatch)
        port = result.port or graph.nodes[result.node_key].default_port
        if result.error is not None:
            on_error = graph.nodes[result.node_key].on_error
            port = {
                "stop": None,
                "continue": graph.nodes[result.node_key].default_port,
                "error_port": "error",
            }[on_error]
        commands = machine.handle(result, float(steps))
        if port is not None:
            settle_outgoing(result.node_key, port)
        in_flight.extend(observe(commands))
        if machine.finished:
            break

    assert machine.status in ("completed", "failed")
    if machine.status == "completed":
        assert set(ran) | skipped == set(graph.nodes)
        assert not set(ran) & skipped
    else:
        assert machine.error is not None
        assert machine.error.code == "planned"


def run_in_order(
    machine: prana.lowlevel.ExecutionMachine, commands: list[Any], steps: int | None = None
) -> list[Dispatch]:
    """Carry out dispatches first in, first out, for ``steps`` results (or to the
    end); return the dispatches still in flight."""
    in_flight = [command for command in commands if isinstance(command, Dispatch)]
    step = 0
    while in_flight and not machine.finished and (steps is None or step < steps):
        step += 1
        dispatch = in_flight.pop(0)
        commands = machine.handle(result_for(dispatch), float(step))
        in_flight.extend(command for command in commands if isinstance(command, Dispatch))
    return in_flight


def assert_same_outcome(
    restored: prana.lowlevel.ExecutionMachine, uninterrupted: prana.lowlevel.ExecutionMachine
) -> None:
    """A restored machine ended as the one never interrupted did: status, runs (in
    order, with ports and outputs) and the nodes that never ran."""

    def outcome(machine: prana.lowlevel.ExecutionMachine) -> list[tuple[Any, ...]]:
        return [
            (run.node_key, run.run_index, run.status, run.port, run.output)
            for run in machine.snapshot().node_runs
        ]

    assert restored.status == uninterrupted.status
    assert outcome(restored) == outcome(uninterrupted)
    assert restored.never_ran() == uninterrupted.never_ran()


def as_format_1(paths: dict[str, Any]) -> dict[str, Any]:
    """Routing state as the first format saved it: settled edges by index, and
    every key present."""
    old = {
        "ready": [],
        "running": [],
        "waiting": {},
        "exits": {},
        "loop_inputs": {},
        "activation": {},
        "skipped": [],
        **paths,
    }
    old["format"] = 1
    old["edges"] = {str(index): ref for index, ref in enumerate(paths["edges"]) if ref != -2}
    return old


@settings(max_examples=200, deadline=None)
@given(acyclic_workflows(), st.integers(0, 12), st.booleans())
def test_a_restored_machine_carries_on_exactly_like_the_original(
    generated: tuple[dict[str, Any], int], stop_after: int, first_format: bool
) -> None:
    document, _ = generated
    graph = prana.lowlevel.compile_workflow(prana.load_workflow(document, actions=ACTIONS), ACTIONS)

    def fresh() -> prana.lowlevel.ExecutionMachine:
        return prana.lowlevel.ExecutionMachine(graph, execution_id="e", input={"x": 1})

    uninterrupted = fresh()
    run_in_order(uninterrupted, uninterrupted.start(0.0))

    interrupted = fresh()
    run_in_order(interrupted, interrupted.start(0.0), stop_after)
    checkpoint = interrupted.checkpoint()
    paths = json.loads(json.dumps(checkpoint.active_paths))  # as a store keeps it
    ended = tuple(run for run in interrupted.snapshot().node_runs if run.status != "running")
    stored = StoredExecution(
        id="e",
        workflow_id=graph.workflow.id,
        workflow_version=graph.workflow.version,
        workflow_hash=graph.hash,
        trigger=graph.trigger,
        status=interrupted.status,
        input={"x": 1},
        # (A completed execution keeps only the nodes it skipped, in any format.)
        active_paths=as_format_1(paths) if first_format and "edges" in paths else paths,
        error=interrupted.error,
        started_at=interrupted.started_at,
        finished_at=interrupted.finished_at,
        runs=ended,
    )
    restored = prana.lowlevel.ExecutionMachine.restored(graph, stored)
    if not restored.finished:
        run_in_order(restored, restored.recover(100.0))

    assert_same_outcome(restored, uninterrupted)


def as_stored(data: Any) -> Any:
    return json.loads(json.dumps(data))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    acyclic_workflows(min_count=BLOCK + 6, max_count=3 * BLOCK), st.integers(0, 60), st.booleans()
)
def test_a_large_workflow_saves_the_blocks_its_steps_change_and_restores_from_them(
    generated: tuple[dict[str, Any], int], stop_after: int, saved_whole: bool
) -> None:
    # In a workflow of more than BLOCK nodes the routing state is saved in blocks,
    # each step saving those it changed: what a store keeps (the last of each
    # block) is always the whole state, and an execution restored from it, or from
    # the whole state as earlier versions saved it, carries on exactly.
    document, _ = generated
    graph = prana.lowlevel.compile_workflow(prana.load_workflow(document, actions=ACTIONS), ACTIONS)
    blocks = (max(len(graph.nodes), len(graph.edges)) + BLOCK - 1) // BLOCK

    def fresh() -> prana.lowlevel.ExecutionMachine:
        return prana.lowlevel.ExecutionMachine(graph, execution_id="e", input={"x": 1})

    uninterrupted = fresh()
    run_in_order(uninterrupted, uninterrupted.start(0.0))

    machine = fresh()
    kept: dict[int, Any] = {}

    def save() -> Checkpoint:
        checkpoint = machine.checkpoint()
        for number, block in checkpoint.paths_blocks.items():
            if block is None:
                del kept[number]
            else:
                kept[number] = as_stored(block)
        if machine.status != "completed":
            whole = machine.snapshot().execution_data["active_paths"]
            assert as_stored(joined(checkpoint.active_paths, kept)) == as_stored(whole)
        return checkpoint

    in_flight = [command for command in machine.start(0.0) if isinstance(command, Dispatch)]
    checkpoint = save()
    assert sorted(checkpoint.paths_blocks) == list(range(blocks))
    for step in range(stop_after):
        if not in_flight or machine.finished:
            break
        commands = machine.handle(result_for(in_flight.pop(0)), float(step + 1))
        in_flight.extend(command for command in commands if isinstance(command, Dispatch))
        checkpoint = save()
    if machine.status == "completed":
        assert kept == {}  # nothing will run again: the store drops them
        return

    whole = as_stored(machine.snapshot().execution_data["active_paths"])
    stored = StoredExecution(
        id="e",
        workflow_id=graph.workflow.id,
        workflow_version=graph.workflow.version,
        workflow_hash=graph.hash,
        trigger=graph.trigger,
        status=machine.status,
        input={"x": 1},
        active_paths=whole if saved_whole else as_stored(checkpoint.active_paths),
        paths_blocks={} if saved_whole else kept,
        error=machine.error,
        started_at=machine.started_at,
        finished_at=machine.finished_at,
        runs=tuple(run for run in machine.snapshot().node_runs if run.status != "running"),
    )
    restored = prana.lowlevel.ExecutionMachine.restored(graph, stored)
    if not restored.finished:
        commands = restored.recover(100.0)
        next_checkpoint = restored.checkpoint()
        if saved_whole:  # from then on it is saved in blocks: every block at once
            assert sorted(next_checkpoint.paths_blocks) == list(range(blocks))
        run_in_order(restored, commands)

    assert_same_outcome(restored, uninterrupted)
