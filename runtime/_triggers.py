"""Trigger actions and the data each kind of trigger starts an execution with.

``manual.trigger`` starts from any input. ``webhook.trigger`` starts from an HTTP
request (method, path, headers, query, body); ``schedule.trigger`` from a cron slot
(scheduled time, expression, timezone); ``function.trigger`` from named arguments;
``event.trigger`` from an event published by name (``engine.publish``).
The engine shapes what it is given into the kind's input before anything starts
(:func:`trigger_input`), so bad data is refused with nothing saved, and templates
see it as ``trigger`` (:func:`trigger_context`): ``trigger.body``,
``trigger.headers``, ``trigger.query``, ``trigger.scheduled_at``, ``trigger.cron``,
``trigger.arguments``, ``trigger.event`` (and ``trigger.data``, the event's data), and
for every kind ``trigger.kind``, ``trigger.node`` and ``trigger.data`` (the whole
input, but for events).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._context import NodeContext
from ._cron import Cron, CronError, parse_cron
from ._errors import PranaError, Problem, did_you_mean
from ._expressions import contains_template
from ._model import Workflow
from ._registry import Action, ActionRegistry, F
from ._shapes import fields_shape
from ._time import iso_time as iso_time
from ._webhooks import DEFAULT_RESPOND_WITHIN, check_respond

if TYPE_CHECKING:
    from ._compiler import ExecutionGraph

_registry = ActionRegistry(builtins=False)
_REQUEST_FIELDS = ("method", "path", "headers", "query", "body")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class TriggerError(PranaError):
    """What a trigger was given does not fit it (a webhook request no workflow serves,
    function arguments missing or unknown); nothing was started. ``methods``: for a
    webhook request whose path is answered for other methods only, those (an HTTP
    server answers 405 with them)."""

    def __init__(self, message: str, *, methods: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.methods = tuple(methods)


def action(name: str, **options: Any) -> Callable[[F], F]:
    """Register a built-in trigger: it outputs the input its kind was shaped into (and
    does nothing else: it is pure)."""
    return _registry.action(name, isolate_inputs=False, json_output=True, pure=True, **options)


def _fixed(names: Iterable[str]) -> Callable[[Mapping[str, Any]], Iterable[Problem]]:
    """Problems of trigger parameters that hold templates: they are read before any
    execution exists, so nothing could fill them in."""

    def check(params: Mapping[str, Any]) -> Iterable[Problem]:
        for name in names:
            if contains_template(params.get(name)):
                yield Problem(
                    path=name, message="a trigger's parameters are fixed; templates are not allowed"
                )

    return check


def _passes_input(ctx: NodeContext) -> Any:
    """Outputs the input the trigger's kind shaped (the execution's input)."""
    return ctx.input


manual_trigger = action(
    "manual.trigger", trigger="manual", description="Start an execution by hand, with its input"
)(_passes_input)


# --------------------------------------------------------------------------- webhook


@attrs.frozen(kw_only=True)
class WebhookTriggerParams:
    """Parameters of ``webhook.trigger``: the request it answers (``path`` defaults to
    the workflow's id) and how it is answered (see :mod:`._webhooks`)."""

    path: str | None = None
    method: str = "POST"
    respond: str = "immediately"
    respond_within: float = DEFAULT_RESPOND_WITHIN
    idempotency_header: str | None = None


def webhook_path(path: str) -> str:
    """A webhook path in its one spelling: no slashes at either end."""
    return path.strip().strip("/")


def _check_webhook(params: Mapping[str, Any]) -> Iterable[Problem]:
    answering = ("respond", "respond_within", "idempotency_header")
    yield from _fixed(("path", "method", *answering))(params)
    if not any(contains_template(params.get(name)) for name in answering):
        yield from check_respond(params)
    method = params.get("method", "POST")
    if isinstance(method, str) and method.upper() not in METHODS:
        yield Problem(path="method", message=f"{method!r} is not one of {', '.join(METHODS)}")
    path = params.get("path")
    if isinstance(path, str) and not contains_template(path) and not _is_path(path):
        yield Problem(
            path="path", message=f"{path!r} is not a webhook path; write it like 'orders/new'"
        )


def _is_path(path: str) -> bool:
    return bool(webhook_path(path)) and not any(mark in path for mark in " ?#")


webhook_trigger = action(
    "webhook.trigger",
    trigger="webhook",
    params=WebhookTriggerParams,
    check=_check_webhook,
    output=fields_shape(*_REQUEST_FIELDS),
    description="Start an execution for an HTTP request (headers, query, body)",
)(_passes_input)


# --------------------------------------------------------------------------- schedule


@attrs.frozen(kw_only=True)
class ScheduleTriggerParams:
    """Parameters of ``schedule.trigger``: a cron expression in a timezone."""

    cron: str
    timezone: str = "UTC"


def _check_schedule(params: Mapping[str, Any]) -> Iterable[Problem]:
    fixed = list(_fixed(("cron", "timezone"))(params))
    yield from fixed
    cron, timezone = params.get("cron"), params.get("timezone", "UTC")
    if fixed or not isinstance(cron, str) or not isinstance(timezone, str):
        return
    try:
        parse_cron(cron, timezone)
    except CronError as exc:
        yield Problem(path="cron", message=str(exc))


schedule_trigger = action(
    "schedule.trigger",
    trigger="schedule",
    params=ScheduleTriggerParams,
    check=_check_schedule,
    output=fields_shape("scheduled_at", "cron", "timezone"),
    description="Start an execution on a cron schedule",
)(_passes_input)


# --------------------------------------------------------------------------- function


@attrs.frozen(kw_only=True)
class FunctionTriggerParams:
    """Parameters of ``function.trigger``: the argument names it requires and the
    defaults of optional ones. With neither, any arguments are accepted."""

    arguments: list[str] | None = None
    defaults: dict[str, Any] = attrs.field(factory=dict)


def _check_function(params: Mapping[str, Any]) -> Iterable[Problem]:
    yield from _fixed(("arguments", "defaults"))(params)
    names, defaults = params.get("arguments") or [], params.get("defaults") or {}
    if isinstance(names, list) and isinstance(defaults, dict):
        for name in sorted(set(names) & set(defaults)):
            yield Problem(
                path=f"defaults.{name}",
                message=f"{name!r} is a required argument; it cannot have a default too",
            )


function_trigger = action(
    "function.trigger",
    trigger="function",
    params=FunctionTriggerParams,
    check=_check_function,
    description="Start an execution like a function call, with named arguments",
)(_passes_input)

# --------------------------------------------------------------------------- event

EVENT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")


@attrs.frozen(kw_only=True)
class EventTriggerParams:
    """Parameters of ``event.trigger``: the name of the event it starts on."""

    event: str


def _check_event(params: Mapping[str, Any]) -> Iterable[Problem]:
    fixed = list(_fixed(("event",))(params))
    yield from fixed
    event = params.get("event")
    if not fixed and isinstance(event, str) and not EVENT_NAME.match(event):
        yield Problem(
            path="event", message=f"{event!r} is not an event name; write it like 'order.created'"
        )


event_trigger = action(
    "event.trigger",
    trigger="event",
    params=EventTriggerParams,
    check=_check_event,
    output=fields_shape("event", "data"),
    description="Start an execution when an event is published (engine.publish)",
)(_passes_input)

TRIGGER_ACTIONS: tuple[Action, ...] = tuple(_registry[name] for name in _registry)


# --------------------------------------------------------------------------- inputs


def trigger_input(graph: ExecutionGraph, given: Any, now: float) -> Any:
    """The input an execution of ``graph`` starts with, shaped for its trigger kind
    from what it was ``given``. Raises :class:`TriggerError` if it does not fit."""
    node = graph.nodes[graph.trigger]
    params = node.node.params
    kind = graph.trigger_kind
    where = f"trigger {graph.trigger!r} ({node.node.type}) of workflow {graph.workflow.id!r}"
    if kind == "webhook":
        return _request(given, params, graph.workflow.id, where)
    if kind == "schedule":
        return _slot(given, params, now, where)
    if kind == "function":
        return _arguments(given, params, where)
    if kind == "event":
        published = _mapping(given, ("event", "data"), where, "{'event': name, 'data': ...}")
        return {"event": published.get("event", params.get("event")), "data": published.get("data")}
    return given


def start_difference(kind: str, first: Any, again: Any) -> str | None:
    """What a second start differs in from the first, both inputs shaped for a trigger
    of ``kind`` (:func:`trigger_input`): ``None`` if it is the same start. A webhook's
    is the same request if its body is (a sender's deliveries of one request differ
    in headers such as a date or a signature's time): else ``"body"``; any other
    trigger's, if its whole input is: else ``"input"``."""
    if kind == "webhook":
        same = isinstance(first, Mapping) and isinstance(again, Mapping)
        return None if same and first.get("body") == again.get("body") else "body"
    return None if first == again else "input"


def trigger_context(kind: str, node: str, input: Any) -> dict[str, Any]:
    """What templates see as ``trigger``."""
    context: dict[str, Any] = {"kind": kind, "node": node, "data": input}
    if kind in ("webhook", "schedule", "event") and isinstance(input, Mapping):
        context.update(input)
    elif kind == "function":
        context["arguments"] = input
    return context


def _mapping(
    given: Any, fields: tuple[str, ...] | None, where: str, example: str
) -> dict[str, Any]:
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise TriggerError(f"{where} starts from {example}, not {type(given).__name__} {given!r}")
    if fields is not None:
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise TriggerError(
                f"{where} does not take {', '.join(map(repr, unknown))}"
                f"{did_you_mean(unknown[0], fields)}; it takes {', '.join(fields)}"
            )
    return dict(given)


def webhook_route(params: Mapping[str, Any], workflow_id: str) -> tuple[str, str]:
    """The method and path a ``webhook.trigger`` with ``params`` answers."""
    method = str(params.get("method", "POST")).upper()
    return method, webhook_path(str(params.get("path") or workflow_id))


def _request(given: Any, params: Mapping[str, Any], workflow_id: str, where: str) -> dict[str, Any]:
    request = _mapping(given, _REQUEST_FIELDS, where, "a request {'body': ..., 'headers': {...}}")
    method, path = webhook_route(params, workflow_id)
    return {
        "method": str(request.get("method") or method).upper(),
        "path": webhook_path(str(request.get("path") or path)),
        "headers": {str(k).lower(): str(v) for k, v in _texts(request, "headers", where).items()},
        "query": _texts(request, "query", where),
        "body": request.get("body"),
    }


def _texts(request: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = request.get(name) or {}
    if not isinstance(value, Mapping):
        raise TriggerError(f"{where}: the request's {name} must be a mapping of names to text")
    return {str(key): item if isinstance(item, list) else str(item) for key, item in value.items()}


def _slot(given: Any, params: Mapping[str, Any], now: float, where: str) -> dict[str, Any]:
    slot = _mapping(given, ("scheduled_at",), where, "{'scheduled_at': ISO datetime} or nothing")
    scheduled_at = slot.get("scheduled_at")
    if scheduled_at is None:
        scheduled_at = iso_time(now)
    elif not isinstance(scheduled_at, str):
        raise TriggerError(f"{where}: scheduled_at must be an ISO datetime, not {scheduled_at!r}")
    return {
        "scheduled_at": scheduled_at,
        "cron": params.get("cron"),
        "timezone": params.get("timezone", "UTC"),
    }


def _arguments(given: Any, params: Mapping[str, Any], where: str) -> dict[str, Any]:
    required = params.get("arguments")
    defaults = params.get("defaults") or {}
    declared = None if required is None and not defaults else [*(required or ()), *defaults]
    arguments = _mapping(given, None, where, "named arguments {'name': value}")
    if declared is not None:
        unknown = sorted(set(arguments) - set(declared))
        if unknown:
            raise TriggerError(
                f"{where} got unknown argument {unknown[0]!r}{did_you_mean(unknown[0], declared)}; "
                f"it takes {', '.join(declared)}"
            )
    missing = [name for name in required or () if name not in arguments]
    if missing:
        raise TriggerError(f"{where} is missing argument {', '.join(map(repr, missing))}")
    return {**defaults, **arguments}


# --------------------------------------------------------------------------- serving


def webhook_routes(workflow: Workflow, actions: ActionRegistry) -> dict[tuple[str, str], str]:
    """The requests ``workflow``'s webhook triggers answer: (method, path) to the
    trigger's key."""
    routes: dict[tuple[str, str], str] = {}
    for node in workflow.nodes:
        action = actions.get(node.type)
        if action is not None and action.trigger == "webhook":
            routes[webhook_route(node.params, workflow.id)] = node.key
    return routes


def event_triggers(workflow: Workflow, actions: ActionRegistry) -> dict[str, list[str]]:
    """The events ``workflow``'s event triggers start on: name to trigger keys."""
    found: dict[str, list[str]] = {}
    for node in workflow.nodes:
        action = actions.get(node.type)
        if action is not None and action.trigger == "event":
            found.setdefault(str(node.params.get("event")), []).append(node.key)
    return found


def schedule_triggers(workflow: Workflow, actions: ActionRegistry) -> dict[str, Cron]:
    """``workflow``'s schedule triggers: key to parsed cron expression. Raises
    :class:`CronError` for one that does not parse (compiling reports it first)."""
    return {
        node.key: parse_cron(node.params.get("cron"), node.params.get("timezone", "UTC"))
        for node in workflow.nodes
        if (action := actions.get(node.type)) is not None and action.trigger == "schedule"
    }
