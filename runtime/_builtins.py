"""The built-in actions every registry starts with.

Core: ``core.noop``, ``core.log``, ``core.fail``, ``core.for_each``. Logic:
``logic.if``, ``logic.switch``. Data: ``data.set``, ``data.merge``. Workflow:
``workflow.set_variables``. Waits (in ``_waits``): ``wait.interval``,
``wait.until``, ``wait.webhook``. Sub-workflows (in ``_subworkflows``):
``workflow.execute``. Triggers (in ``_triggers``): ``manual.trigger``,
``webhook.trigger``, ``schedule.trigger``, ``function.trigger``. Answering a webhook's
request (in ``_webhooks``): ``webhook.respond``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from ._context import NodeContext, Output
from ._errors import NodeError, Problem, did_you_mean
from ._expressions import contains_template
from ._loading import KEY_PATTERN
from ._model import DEFAULT_PORT, ERROR_PORT
from ._registry import Action, ActionRegistry, F
from ._shapes import OutputShape, fields_shape
from ._subworkflows import SUBWORKFLOW_ACTIONS
from ._triggers import TRIGGER_ACTIONS
from ._waits import WAIT_ACTIONS
from ._webhooks import WEBHOOK_ACTIONS

logger = logging.getLogger("prana.workflow")

_registry = ActionRegistry(builtins=False)


def action(name: str, *, pure: bool = True, **options: Any) -> Callable[[F], F]:
    """Register a built-in: built-ins never change their inputs in place, and output
    only data that was checked already; they are pure unless said otherwise."""
    return _registry.action(name, isolate_inputs=False, json_output=True, pure=pure, **options)


# --------------------------------------------------------------------------- core


@action("core.noop", description="Pass the input through unchanged")
def noop(ctx: NodeContext) -> Any:
    """Outputs its input."""
    return ctx.input


@attrs.frozen(kw_only=True)
class LogParams:
    """Parameters of ``core.log``."""

    message: Any
    level: str = "info"


_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _check_log(params: Mapping[str, Any]) -> Iterable[Problem]:
    level = params.get("level", "info")
    if isinstance(level, str) and not contains_template(level) and level not in _LOG_LEVELS:
        yield Problem(
            path="level",
            message=f"must be one of {', '.join(_LOG_LEVELS)}, got {level!r}"
            f"{did_you_mean(level, _LOG_LEVELS)}",
        )


@action(
    "core.log",
    params=LogParams,
    check=_check_log,
    description="Log a message; pass the input through",
    pure=False,  # a log line is an effect: written once what came before it is saved
)
def log(ctx: NodeContext) -> Any:
    """Logs ``message`` on the ``prana.workflow`` logger and outputs its input."""
    params: LogParams = ctx.params
    logger.log(
        _LOG_LEVELS.get(params.level, logging.INFO),
        "%s",
        params.message,
        extra={
            "execution_id": ctx.execution_id,
            "workflow_id": ctx.workflow_id,
            "node_key": ctx.node_key,
        },
    )
    return ctx.input


@attrs.frozen(kw_only=True)
class FailParams:
    """Parameters of ``core.fail``."""

    message: str
    code: str = "workflow_error"
    details: Any = None


@action("core.fail", params=FailParams, description="Fail the node with a chosen error")
def fail(ctx: NodeContext) -> Any:
    """Fails with ``message`` and ``code``: stops the execution unless on_error says otherwise."""
    params: FailParams = ctx.params
    raise NodeError(params.message, code=params.code, details=params.details)


@attrs.frozen(kw_only=True)
class ForEachParams:
    """Parameters of ``core.for_each``."""

    items: Any
    batch_size: int = 1


def _check_for_each(params: Mapping[str, Any]) -> Iterable[Problem]:
    batch_size = params.get("batch_size", 1)
    if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size < 1:
        yield Problem(path="batch_size", message=f"must be at least 1, got {batch_size}")
    items = params.get("items")
    if not contains_template(items) and not isinstance(items, list):
        yield Problem(path="items", message="must be a list or a template giving a list")


def _cursor(ctx: NodeContext) -> tuple[list[Any], int, int, int]:
    """Where a ``core.for_each`` is, from its node context, as a loop-back arrives."""
    cursor = ctx.node_context
    items, batch_size = cursor.get("items"), cursor.get("batch_size")
    index, iteration = cursor.get("index"), cursor.get("iteration")
    if not (
        isinstance(items, list)
        and all(type(number) is int for number in (batch_size, index, iteration))
        and batch_size >= 1  # type: ignore[operator]
    ):
        raise NodeError(
            f"node {ctx.node_key!r} came back from its loop without its cursor (items, "
            "index, batch_size, iteration in its node context): something changed or "
            "cleared that context; start the loop again from its input",
            code="cursor_lost",
            details={"node_context_fields": sorted(cursor)},
        )
    return items, batch_size, index, iteration  # type: ignore[return-value]


@action(
    "core.for_each",
    outputs=("loop", "done"),
    default_port="loop",
    params=ForEachParams,
    check=_check_for_each,
    render_on_loop_back=False,
    collect_port="done",
    description="Run the loop branch once per item (or batch); then 'done' with every result",
)
def for_each(ctx: NodeContext) -> Output:
    """Iterates ``items``: the current item (or batch) goes out on ``loop``.

    Connect the end of the loop body back to this node; each arrival there starts the
    next iteration. After the last item, ``done`` carries what came back, one entry
    per iteration. The cursor lives in the node context: ``items``, ``batch_size``,
    ``index`` (of the first item of the current batch), ``iteration``, ``item`` (the
    current item, or list for batches) and ``done``.
    """
    if not ctx.loop_back:
        params: ForEachParams = ctx.params
        if not isinstance(params.items, list):
            raise NodeError(
                f"items must be a list, got {type(params.items).__name__}", code="invalid_params"
            )
        if params.batch_size < 1:
            raise NodeError(
                f"batch_size must be at least 1, got {params.batch_size}", code="invalid_params"
            )
        items: list[Any] = params.items
        batch_size = params.batch_size
        index, iteration = 0, 0
    else:
        items, batch_size, index, iteration = _cursor(ctx)
        index += batch_size
        iteration += 1
    cursor_out: dict[str, Any] = {
        "items": items,
        "batch_size": batch_size,
        "index": index,
        "iteration": iteration,
    }
    if index >= len(items):
        # The engine puts the collected results on 'done' (collect_port).
        return Output(None, port="done", node_context={**cursor_out, "item": None, "done": True})
    batch = items[index : index + batch_size]
    item = batch[0] if batch_size == 1 else batch
    return Output(item, port="loop", node_context={**cursor_out, "item": item, "done": False})


# --------------------------------------------------------------------------- logic


@attrs.frozen(kw_only=True)
class IfParams:
    """Parameters of ``logic.if``."""

    condition: Any


_CONDITION_VALUES = {"true": True, "false": False, "1": True, "0": False}
CONDITION_RULE = (
    "a condition must be true or false: a boolean, 1 or 0, or the text "
    "'true', 'false' (any case), '1' or '0'"
)


def condition_value(value: Any) -> bool | None:
    """What a condition means (see :data:`CONDITION_RULE`), or ``None`` if it is
    neither true nor false. Texts count because webhook queries and headers carry
    ``"false"`` and ``"0"``, which Python would take as true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        return _CONDITION_VALUES.get(value.strip().lower())
    return None


def condition_of(value: Any, where: str) -> bool:
    """``value`` as a condition; a node fails with ``invalid_condition`` if it is
    neither true nor false."""
    meaning = condition_value(value)
    if meaning is None:
        text = json.dumps(value, ensure_ascii=False, default=repr)  # as the workflow wrote it
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise NodeError(
            f"{where} is {shown}, which is neither true nor false: {CONDITION_RULE}",
            code="invalid_condition",
            details={"value": value if len(text) <= 1000 else shown},
        )
    return meaning


def _check_if(params: Mapping[str, Any]) -> Iterable[Problem]:
    condition = params.get("condition")
    if not contains_template(condition) and condition_value(condition) is None:
        yield Problem(
            path="condition", message=f"{condition!r} is not a condition: {CONDITION_RULE}"
        )


@action(
    "logic.if",
    outputs=("true", "false"),
    default_port="true",
    params=IfParams,
    check=_check_if,
    description="Route the input to 'true' or 'false' by a condition",
)
def if_(ctx: NodeContext) -> Output:
    """Passes its input to ``true`` when ``condition`` is true, to ``false`` when it is
    false (:data:`CONDITION_RULE`); any other value fails the node."""
    params: IfParams = ctx.params
    return Output(
        ctx.input, port="true" if condition_of(params.condition, "the condition") else "false"
    )


@attrs.frozen(kw_only=True)
class SwitchParams:
    """Parameters of ``logic.switch``: the first matching case chooses the port."""

    cases: list[dict[str, Any]]
    value: Any = None


_CASE_TESTS = ("equals", "in", "condition")
SWITCH_DEFAULT_PORT = "default"


def _switch_ports(params: Mapping[str, Any]) -> tuple[str, ...]:
    cases = params.get("cases")
    ports: list[str] = []
    if isinstance(cases, list):
        for case in cases:
            if isinstance(case, Mapping) and isinstance(case.get("port"), str):
                ports.append(case["port"])
    return (*ports, SWITCH_DEFAULT_PORT)


def _check_switch(params: Mapping[str, Any]) -> Iterable[Problem]:
    cases = params.get("cases")
    if not isinstance(cases, list):
        return
    seen: set[str] = set()
    for index, case in enumerate(cases):
        path = f"cases[{index}]"
        if not isinstance(case, Mapping):
            yield Problem(
                path=path, message="a case must be an object like {port: eu, in: [DE, FR]}"
            )
            continue
        port = case.get("port")
        if not isinstance(port, str) or not KEY_PATTERN.match(port):
            yield Problem(
                path=f"{path}.port", message="a case needs a port name (letters, digits, _ or -)"
            )
        elif port in (SWITCH_DEFAULT_PORT, ERROR_PORT):
            yield Problem(
                path=f"{path}.port", message=f"{port!r} is reserved; choose another port name"
            )
        elif port in seen:
            yield Problem(path=f"{path}.port", message=f"port {port!r} is used by an earlier case")
        else:
            seen.add(port)
        tests = [name for name in _CASE_TESTS if name in case]
        unknown = sorted(set(case) - {"port", *_CASE_TESTS})
        for name in unknown:
            yield Problem(
                path=f"{path}.{name}",
                message=f"unknown case field{did_you_mean(name, _CASE_TESTS)}; "
                "a case has port and one of equals, in, condition",
            )
        if len(tests) != 1:
            yield Problem(path=path, message="a case needs exactly one of equals, in, condition")
        elif (
            tests == ["condition"]
            and not contains_template(case["condition"])
            and condition_value(case["condition"]) is None
        ):
            yield Problem(
                path=f"{path}.condition",
                message=f"{case['condition']!r} is not a condition: {CONDITION_RULE}",
            )
        elif (
            tests == ["in"]
            and not contains_template(case["in"])
            and not isinstance(case["in"], list)
        ):
            yield Problem(path=f"{path}.in", message="must be a list of values")


@action(
    "logic.switch",
    outputs=_switch_ports,
    default_port=SWITCH_DEFAULT_PORT,
    params=SwitchParams,
    check=_check_switch,
    description="Route the input to the port of the first matching case, else 'default'",
)
def switch(ctx: NodeContext) -> Output:
    """Compares ``value`` with each case in order (``equals``, ``in``, or a true
    ``condition``, as ``logic.if`` reads one); the first match's port gets the input,
    ``default`` if none matches.
    """
    params: SwitchParams = ctx.params
    for case in params.cases:
        if "equals" in case:
            matched = params.value == case["equals"]
        elif "in" in case:
            options = case["in"]
            if not isinstance(options, list):
                raise NodeError(
                    f"case {case.get('port')!r}: 'in' must be a list", code="invalid_params"
                )
            matched = params.value in options
        else:
            matched = condition_of(case.get("condition"), f"case {case['port']!r}'s condition")
        if matched:
            return Output(ctx.input, port=case["port"])
    return Output(ctx.input, port=SWITCH_DEFAULT_PORT)


# --------------------------------------------------------------------------- data


@attrs.frozen(kw_only=True)
class SetParams:
    """Parameters of ``data.set``."""

    values: Any
    keep_input: bool = False


def _set_shape(params: Mapping[str, Any]) -> OutputShape | None:
    """An object of ``values`` (without ``keep_input``) has exactly their keys."""
    values = params.get("values")
    if params.get("keep_input") or not isinstance(values, Mapping):
        return None
    return fields_shape(*values)


@action(
    "data.set",
    params=SetParams,
    output=_set_shape,
    description="Output a value built from templates",
)
def set_(ctx: NodeContext) -> Any:
    """Outputs ``values`` (any JSON value, usually an object of templates); with
    ``keep_input`` an object of values is laid over the input object."""
    params: SetParams = ctx.params
    if not params.keep_input:
        return params.values
    if not isinstance(ctx.input, Mapping) or not isinstance(params.values, Mapping):
        raise NodeError("keep_input needs an object input and object values", code="invalid_input")
    return {**ctx.input, **params.values}


MERGE_STRATEGIES = ("append", "merge", "concat", "combine_by_key")
MERGE_MODES = ("all", "any")


@attrs.frozen(kw_only=True)
class MergeParams:
    """Parameters of ``data.merge``."""

    strategy: str = "append"
    mode: str = "all"
    key: str | None = None
    inputs: list[str] = attrs.field(factory=lambda: [DEFAULT_PORT])


def _merge_inputs(params: Mapping[str, Any]) -> tuple[str, ...]:
    ports = params.get("inputs", [DEFAULT_PORT])
    if isinstance(ports, list) and all(isinstance(port, str) for port in ports) and ports:
        return tuple(ports)
    return (DEFAULT_PORT,)


def _merge_join(params: Mapping[str, Any]) -> str:
    return "any" if params.get("mode") == "any" else "all"


def _check_merge(params: Mapping[str, Any]) -> Iterable[Problem]:
    for name, choices, default in (
        ("strategy", MERGE_STRATEGIES, "append"),
        ("mode", MERGE_MODES, "all"),
    ):
        value = params.get(name, default)
        if isinstance(value, str) and value not in choices:
            yield Problem(
                path=name,
                message=f"must be one of {', '.join(choices)}, got {value!r}{did_you_mean(value, choices)}",
            )
    if params.get("strategy") == "combine_by_key" and not params.get("key"):
        yield Problem(
            path="key", message="strategy combine_by_key needs the key to match objects on"
        )
    ports = params.get("inputs", [DEFAULT_PORT])
    if isinstance(ports, list):
        if not ports:
            yield Problem(path="inputs", message="needs at least one input port")
        for index, port in enumerate(ports):
            if isinstance(port, str) and not KEY_PATTERN.match(port):
                yield Problem(path=f"inputs[{index}]", message=f"{port!r} is not a valid port name")


@action(
    "data.merge",
    inputs=_merge_inputs,
    params=MergeParams,
    join=_merge_join,
    check=_check_merge,
    description="Combine the data routed to it: append, merge objects, concat lists, combine by key",
)
def merge(ctx: NodeContext) -> Any:
    """Combines every input that arrived, port by port in ``inputs`` order, each port's
    data in connection order.

    ``append`` gives the list of inputs; ``merge`` lays objects over each other
    (later wins); ``concat`` joins lists (a non-list counts as one item);
    ``combine_by_key`` joins objects from every input that share ``key``.
    With ``mode: any`` the node runs on the first input to arrive.
    """
    params: MergeParams = ctx.params
    items = [item for port in params.inputs for item in ctx.input_list(port)]
    if params.strategy == "append":
        return items
    if params.strategy == "merge":
        merged: dict[str, Any] = {}
        for item in items:
            if not isinstance(item, Mapping):
                raise NodeError(
                    f"strategy 'merge' needs objects, got {type(item).__name__}",
                    code="invalid_input",
                )
            merged.update(item)
        return merged
    if params.strategy == "concat":
        joined: list[Any] = []
        for item in items:
            if isinstance(item, list):
                joined.extend(item)
            else:
                joined.append(item)
        return joined
    return _combine_by_key(items, params.key or "")


def _combine_by_key(items: list[Any], key: str) -> list[dict[str, Any]]:
    combined: dict[Any, dict[str, Any]] = {}
    for item in items:
        for record in item if isinstance(item, list) else [item]:
            if not isinstance(record, Mapping) or key not in record:
                raise NodeError(
                    f"strategy 'combine_by_key' needs objects with key {key!r}, got {record!r}",
                    code="invalid_input",
                )
            value = record[key]
            try:
                hash(value)
            except TypeError:
                raise NodeError(
                    f"key {key!r} must hold a string or number, got {value!r}", code="invalid_input"
                ) from None
            combined.setdefault(value, {}).update(record)
    return list(combined.values())


# --------------------------------------------------------------------------- workflow


@attrs.frozen(kw_only=True)
class SetVariablesParams:
    """Parameters of ``workflow.set_variables``."""

    values: dict[str, Any]


@action(
    "workflow.set_variables",
    params=SetVariablesParams,
    description="Set workflow variables (vars); pass the input through",
)
def set_variables(ctx: NodeContext) -> Output:
    """Sets each of ``values`` as a workflow variable and outputs its input."""
    params: SetVariablesParams = ctx.params
    return Output(ctx.input, vars=params.values)


BUILTIN_ACTIONS: tuple[Action, ...] = (
    *TRIGGER_ACTIONS,
    *(_registry[name] for name in _registry),
    *WAIT_ACTIONS,
    *SUBWORKFLOW_ACTIONS,
    *WEBHOOK_ACTIONS,
)
