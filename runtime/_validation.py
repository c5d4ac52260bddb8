"""Checks of a structured workflow: everything that can be known before it runs.

Without a registry: identifiers, duplicate keys, dangling or duplicate connections,
loops entered at several nodes, template syntax, names and node references. With a
registry: action types, parameters, ports on both ends of every connection, and
triggers. Every problem is collected; nothing stops at the first.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from collections.abc import Iterable, Mapping

import attrs

from ._errors import Problem, did_you_mean
from ._expressions import CompiledParams, Template, compile_params, compile_template
from ._graph import GraphEdge, LoopShape, find_loops
from ._loading import KEY_PATTERN
from ._model import ERROR_PORT, Node, Workflow
from ._params import check_params
from ._registry import Action, ActionRegistry
from ._webhooks import responder_problems

_WORKFLOW_ID = re.compile(r"^[^\s/\\]+$")
MAX_CONCURRENCY = 10_000
MAX_PRIORITY = 1_000_000
# What a concurrency key's template may read: it is rendered before anything runs.
KEY_NAMES = ("input", "trigger", "env")


@attrs.frozen(kw_only=True)
class Analysis:
    """What checking found: problems, and each node's compiled parameters."""

    problems: tuple[Problem, ...]
    params: Mapping[str, CompiledParams]
    actions: Mapping[str, Action]
    concurrency_key: Template | None = None
    # The loops of the whole graph (every node, every connection, numbered by
    # connection), when every connection joins nodes of the workflow: a graph that
    # keeps them all has these loops.
    loops: tuple[LoopShape, ...] | None = None


def effective_on_error(node: Node, workflow: Workflow) -> str:
    """The node's on_error, or the workflow's default when the node sets none."""
    return node.settings.on_error or workflow.settings.on_error


def analyse_workflow(
    workflow: Workflow,
    registry: ActionRegistry | None,
    *,
    known_node_keys: Iterable[str] = (),
) -> Analysis:
    """Check ``workflow`` (against ``registry`` when given) and compile its templates."""
    problems: list[Problem] = []
    known_node_keys = frozenset(known_node_keys)
    _check_header(workflow, known_node_keys, problems)

    node_paths: dict[str, str] = {}
    for index, node in enumerate(workflow.nodes):
        path = f"nodes[{index}]"
        if not KEY_PATTERN.match(node.key):
            problems.append(
                Problem(
                    path=f"{path}.key",
                    message=f"{node.key!r} is not a valid node key: use letters, digits, _ and -, "
                    "starting with a letter or _",
                )
            )
        if node.key in node_paths:
            problems.append(
                Problem(
                    path=f"{path}.key",
                    message=f"duplicate node key {node.key!r} (also {node_paths[node.key]})",
                )
            )
        else:
            node_paths[node.key] = path
        if not node.type:
            problems.append(Problem(path=f"{path}.type", message="required field is empty"))
        _check_node_settings(node, f"{path}.settings", problems)

    all_keys = set(node_paths) | known_node_keys
    compiled: dict[str, CompiledParams] = {}
    actions: dict[str, Action] = {}
    for index, node in enumerate(workflow.nodes):
        path = f"nodes[{index}]"
        compiled.setdefault(
            node.key,
            compile_params(
                node.params, node_keys=all_keys, problems=problems, path=f"{path}.params"
            ),
        )
        if registry is None:
            continue
        action = registry.get(node.type)
        if action is None:
            if node.type:
                problems.append(
                    Problem(
                        path=f"{path}.type",
                        message=f"unknown action {node.type!r}{did_you_mean(node.type, registry)}",
                    )
                )
            continue
        actions.setdefault(node.key, action)
        _check_node_params(action, node, path, problems)

    _check_output_reads(workflow, compiled, actions, problems)
    _check_connections(workflow, node_paths, all_keys, actions, registry is not None, problems)
    loops = _check_loops(workflow, node_paths, problems)
    # Only when every node's action is known: an unknown one might have been a trigger.
    all_known = registry is not None and len(actions) == len(workflow.nodes) > 0
    if all_known and not any(action.trigger for action in actions.values()):
        problems.append(
            Problem(
                path="nodes",
                message="the workflow has no trigger node; add one such as "
                "{key: start, type: manual.trigger}",
            )
        )
    if registry is not None:
        problems.extend(responder_problems(workflow, actions))
    key = _concurrency_key(workflow, problems)
    return Analysis(
        problems=tuple(problems),
        params=compiled,
        actions=actions,
        concurrency_key=key,
        loops=loops,
    )


def _concurrency_key(workflow: Workflow, problems: list[Problem]) -> Template | None:
    """The workflow's concurrency key, compiled, if it has one."""
    text = workflow.settings.concurrency_key
    if text is None:
        return None
    if not text.strip():
        problems.append(
            Problem(
                path="settings.concurrency_key",
                message="is empty: give a template such as '{{ input.customer }}', or leave it out",
            )
        )
        return None
    return compile_template(
        text,
        "concurrency_key",
        node_keys=None,
        problems=problems,
        path="settings.concurrency_key",
        names=KEY_NAMES,
    )


def check_workflow(
    workflow: Workflow, registry: ActionRegistry | None, *, known_node_keys: Iterable[str] = ()
) -> list[Problem]:
    """Every problem of ``workflow`` (against ``registry`` when given)."""
    known_node_keys = frozenset(known_node_keys)
    analysis = analyse_workflow(workflow, registry, known_node_keys=known_node_keys)
    if (
        registry is not None
        and not analysis.problems
        and known_node_keys <= {node.key for node in workflow.nodes}
    ):
        _recent[id(workflow)] = (weakref.ref(workflow), analysis)
        while len(_recent) > _RECENT:
            # A load on another thread (Engine.load_workflow) may take the same one.
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del _recent[next(iter(_recent))]
    return list(analysis.problems)


# The analyses of the workflows checked last (load_workflow checks a workflow against
# its registry), by the workflow's identity: compiling one of them right after does
# not check it again, as long as the registry gives each node the same action.
_RECENT = 64
_recent: dict[int, tuple[weakref.ref[Workflow], Analysis]] = {}


def checked_analysis(workflow: Workflow, registry: ActionRegistry) -> Analysis:
    """The analysis of ``workflow`` against ``registry``: the one made when it was
    loaded, if its actions are still the registry's; otherwise a new one."""
    recent = _recent.get(id(workflow))
    if recent is not None and recent[0]() is workflow:
        analysis = recent[1]
        actions = analysis.actions
        if all(registry.get(node.type) is actions.get(node.key) for node in workflow.nodes):
            return analysis
    return analyse_workflow(workflow, registry)


def _check_header(
    workflow: Workflow, known_node_keys: frozenset[str], problems: list[Problem]
) -> None:
    if not workflow.id:
        problems.append(Problem(path="id", message="required: give the workflow an id"))
    elif not _WORKFLOW_ID.match(workflow.id):
        problems.append(
            Problem(
                path="id",
                message=f"{workflow.id!r} is not a valid workflow id: no spaces or slashes",
            )
        )
    if workflow.version < 1:
        problems.append(
            Problem(path="version", message=f"must be at least 1, got {workflow.version}")
        )
    settings = workflow.settings
    if settings.max_iterations < 1:
        problems.append(
            Problem(
                path="settings.max_iterations",
                message=f"must be at least 1, got {settings.max_iterations}",
            )
        )
    if not 1 <= settings.concurrency <= MAX_CONCURRENCY:
        problems.append(
            Problem(
                path="settings.concurrency",
                message=f"must be between 1 and {MAX_CONCURRENCY}, got {settings.concurrency}",
            )
        )
    if settings.timeout is not None and settings.timeout <= 0:
        problems.append(Problem(path="settings.timeout", message="must be longer than 0 seconds"))
    if not 1 <= settings.concurrency_limit <= MAX_CONCURRENCY:
        problems.append(
            Problem(
                path="settings.concurrency_limit",
                message=f"must be between 1 and {MAX_CONCURRENCY}, "
                f"got {settings.concurrency_limit}",
            )
        )
    if not -MAX_PRIORITY <= settings.priority <= MAX_PRIORITY:
        problems.append(
            Problem(
                path="settings.priority",
                message=f"must be between {-MAX_PRIORITY} and {MAX_PRIORITY}, "
                f"got {settings.priority}",
            )
        )
    if not workflow.nodes and not known_node_keys:
        problems.append(Problem(path="nodes", message="a workflow needs at least one node"))


MAX_ATTEMPTS = 100


def _check_node_settings(node: Node, path: str, problems: list[Problem]) -> None:
    settings = node.settings
    if settings.timeout is not None and settings.timeout <= 0:
        problems.append(Problem(path=f"{path}.timeout", message="must be longer than 0 seconds"))
    retry = settings.retry
    if retry is None:
        return
    if not 1 <= retry.max_attempts <= MAX_ATTEMPTS:
        problems.append(
            Problem(
                path=f"{path}.retry.max_attempts",
                message=f"must be between 1 and {MAX_ATTEMPTS}, got {retry.max_attempts}",
            )
        )
    if retry.max_delay is not None and retry.max_delay < retry.delay:
        problems.append(
            Problem(
                path=f"{path}.retry.max_delay",
                message=f"must not be shorter than delay ({retry.max_delay} s < {retry.delay} s)",
            )
        )


def _check_output_reads(
    workflow: Workflow,
    compiled: Mapping[str, CompiledParams],
    actions: Mapping[str, Action],
    problems: list[Problem],
) -> None:
    """A template that reads ``nodes.x.output.field`` where ``x``'s action declares
    the shape of its output, without ``field``, is a problem."""
    params = {node.key: node.params for node in workflow.nodes}
    types = {node.key: node.type for node in workflow.nodes}
    for index, node in enumerate(workflow.nodes):
        templates = compiled[node.key].templates if node.key in compiled else ()
        for template in templates:
            for source, field in template.output_reads:
                action = actions.get(source)
                if action is None:
                    continue
                try:
                    shape = action.output_shape(params[source])
                except Exception:  # a shape the node's own checks report as broken
                    continue
                if shape is None or field in shape.fields:
                    continue
                problems.append(
                    Problem(
                        path=f"nodes[{index}].params.{template.parameter}",
                        message=f"node {source!r} ({types[source]}) has no output field "
                        f"{field!r}{did_you_mean(field, shape.fields)}; its output has "
                        f"{', '.join(sorted(shape.fields)) or 'no fields'}",
                    )
                )


def _check_node_params(action: Action, node: Node, path: str, problems: list[Problem]) -> None:
    params_path = f"{path}.params"
    found: list[Problem] = []
    if action.params is not None:
        found.extend(check_params(action.params, node.params, params_path))
    if action.check is not None and not found:
        found.extend(
            Problem(
                path=f"{params_path}.{problem.path}" if problem.path else params_path,
                message=problem.message,
            )
            for problem in action.check(node.params)
        )
    problems.extend(found)


def _check_connections(
    workflow: Workflow,
    node_paths: Mapping[str, str],
    all_keys: set[str],
    actions: Mapping[str, Action],
    with_registry: bool,
    problems: list[Problem],
) -> None:
    nodes = {node.key: node for node in workflow.nodes}
    seen: dict[tuple[str, str, str, str], int] = {}
    outputs: dict[str, tuple[str, ...]] = {}  # each node's ports, worked out once
    inputs: dict[str, tuple[str, ...]] = {}
    valid_ports: set[str] = set()
    for index, connection in enumerate(workflow.connections):
        for field, key in (("from", connection.from_), ("to", connection.to)):
            if key not in all_keys:
                problems.append(
                    Problem(
                        path=f"connections[{index}].{field}",
                        message=f"no node has key {key!r}{did_you_mean(key, node_paths)}",
                    )
                )
        for field, port in (("from_port", connection.from_port), ("to_port", connection.to_port)):
            if port not in valid_ports:
                if KEY_PATTERN.match(port):
                    valid_ports.add(port)
                else:
                    problems.append(
                        Problem(
                            path=f"connections[{index}].{field}",
                            message=f"{port!r} is not a valid port name",
                        )
                    )
        identity = (connection.from_, connection.from_port, connection.to, connection.to_port)
        if identity in seen:
            problems.append(
                Problem(
                    path=f"connections[{index}]",
                    message=f"duplicate of connections[{seen[identity]}] ({connection})",
                )
            )
        else:
            seen[identity] = index
        if not with_registry:
            continue
        source, target = actions.get(connection.from_), actions.get(connection.to)
        if source is not None:
            node = nodes[connection.from_]
            ports = outputs.get(node.key)
            if ports is None:
                ports = source.output_ports(node.params)
                if effective_on_error(node, workflow) == "error_port":
                    ports = (*ports, ERROR_PORT)
                outputs[node.key] = ports
            if connection.from_port not in ports:
                hint = did_you_mean(connection.from_port, ports)
                advice = (
                    "; set the node's settings.on_error to error_port to route its errors there"
                    if connection.from_port == ERROR_PORT
                    else ""
                )
                problems.append(
                    Problem(
                        path=f"connections[{index}].from_port",
                        message=f"node {connection.from_!r} ({node.type}) has no output port "
                        f"{connection.from_port!r}{hint}; its ports are {', '.join(ports)}{advice}",
                    )
                )
        if target is not None:
            node = nodes[connection.to]
            if target.trigger is not None:
                problems.append(
                    Problem(
                        path=f"connections[{index}].to",
                        message=f"node {connection.to!r} is a trigger ({node.type}); "
                        "nothing can connect into a trigger",
                    )
                )
                continue
            ports = inputs.get(node.key)
            if ports is None:
                ports = inputs[node.key] = target.input_ports(node.params)
            if connection.to_port not in ports:
                problems.append(
                    Problem(
                        path=f"connections[{index}].to_port",
                        message=f"node {connection.to!r} ({node.type}) has no input port "
                        f"{connection.to_port!r}{did_you_mean(connection.to_port, ports)}; "
                        f"its ports are {', '.join(ports)}",
                    )
                )


def _check_loops(
    workflow: Workflow, node_paths: Mapping[str, str], problems: list[Problem]
) -> tuple[LoopShape, ...] | None:
    """Report the loops entered at several nodes; the loops of the whole graph, if
    every connection joins nodes of the workflow."""
    keys = list(node_paths)
    edges = [
        GraphEdge(number=index, source=connection.from_, target=connection.to)
        for index, connection in enumerate(workflow.connections)
        if connection.from_ in node_paths and connection.to in node_paths
    ]
    loops, conflicts = find_loops(keys, edges)
    for conflict in conflicts:
        first = conflict.entries[0]
        for index in conflict.edges:
            connection = workflow.connections[index]
            problems.append(
                Problem(
                    path=f"connections[{index}]",
                    message=f"enters the loop through {', '.join(conflict.nodes)} at {connection.to!r}, "
                    f"but the loop is also entered at {first!r}; a loop must have one entry node. "
                    f"Connect data from outside the loop to {first!r} only, or read it in a template "
                    f"with nodes.{connection.from_}.output",
                )
            )
    return tuple(loops) if len(edges) == len(workflow.connections) else None
