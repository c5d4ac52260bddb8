"""How a webhook's request is answered: at once, with the execution's output, or by a
``webhook.respond`` node.

``webhook.trigger``'s ``respond`` parameter says which (:data:`RESPOND_MODES`), and
``respond_within`` how long the sender is kept waiting for it. A ``webhook.respond``
node outputs the response it builds (``status``, ``headers``, ``body``): the daemon
answers with the first one to complete, and the execution goes on. The HTTP layer
reads the route (:class:`WebhookRoute`) and the response from the execution's events
or its record; this module decides what a response may hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from ._context import NodeContext
from ._errors import NodeError, Problem
from ._expressions import contains_template
from ._model import Workflow
from ._registry import Action, ActionRegistry, F

_registry = ActionRegistry(builtins=False)

RESPOND_MODES = ("immediately", "when_done", "by_node")
RESPOND_ACTION = "webhook.respond"
DEFAULT_RESPOND_WITHIN = 30.0
MAX_RESPOND_WITHIN = 300.0

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers of the message's framing and connection: the server writes those.
_SERVERS_HEADERS = frozenset(
    ("connection", "content-length", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade")
)


@attrs.frozen(kw_only=True)
class WebhookRoute:
    """What answers a webhook request: the served workflow, its trigger node, how the
    request is answered (``respond``, one of :data:`RESPOND_MODES`) and for at most
    how many seconds the sender waits for it; ``responders`` are the keys of the
    workflow's ``webhook.respond`` nodes. A request whose ``idempotency_header`` (a
    lower-case name) has a value is started once per value, as with an
    ``Idempotency-Key``."""

    workflow: Workflow
    trigger: str
    respond: str = "immediately"
    respond_within: float = DEFAULT_RESPOND_WITHIN
    responders: frozenset[str] = frozenset()
    idempotency_header: str | None = None


def webhook_route_of(workflow: Workflow, trigger: str) -> WebhookRoute:
    """The route of ``workflow``'s webhook trigger ``trigger`` (a checked workflow)."""
    params = next(node.params for node in workflow.nodes if node.key == trigger)
    header = params.get("idempotency_header")
    return WebhookRoute(
        workflow=workflow,
        trigger=trigger,
        respond=str(params.get("respond", "immediately")),
        respond_within=float(params.get("respond_within", DEFAULT_RESPOND_WITHIN)),
        responders=frozenset(node.key for node in workflow.nodes if node.type == RESPOND_ACTION),
        idempotency_header=None if header is None else str(header).lower(),
    )


def check_respond(params: Mapping[str, Any]) -> Iterable[Problem]:
    """Problems of ``webhook.trigger``'s ``respond``, ``respond_within`` and
    ``idempotency_header``."""
    respond = params.get("respond", "immediately")
    if respond not in RESPOND_MODES:
        yield Problem(
            path="respond",
            message=f"{respond!r} is not one of {', '.join(RESPOND_MODES)}: answer at once, "
            "with the execution's output, or with what a webhook.respond node builds",
        )
    within = params.get("respond_within", DEFAULT_RESPOND_WITHIN)
    if (
        isinstance(within, bool)
        or not isinstance(within, (int, float))
        or not 0 < within <= MAX_RESPOND_WITHIN
    ):
        yield Problem(
            path="respond_within",
            message=f"must be a number of seconds above 0 and at most {MAX_RESPOND_WITHIN:g}, "
            f"not {within!r}",
        )
    header = params.get("idempotency_header")
    if header is not None and (not isinstance(header, str) or not _TOKEN.match(header)):
        yield Problem(
            path="idempotency_header",
            message=f"{header!r} is not a header name; name the header whose value a sender "
            "keeps when it sends a request again, like X-GitHub-Delivery",
        )


def responder_problems(workflow: Workflow, actions: Mapping[str, Action]) -> list[Problem]:
    """A webhook trigger answered ``by_node`` in a workflow without a
    ``webhook.respond`` node could never answer."""
    if any(action.name == RESPOND_ACTION for action in actions.values()):
        return []
    return [
        Problem(
            path=f"nodes[{index}].params.respond",
            message="is by_node, but the workflow has no webhook.respond node to answer the "
            "request: add one, or respond when_done (with the execution's output)",
        )
        for index, node in enumerate(workflow.nodes)
        if (action := actions.get(node.key)) is not None
        and action.trigger == "webhook"
        and node.params.get("respond") == "by_node"
    ]


# --------------------------------------------------------------------------- the node


def action(name: str, **options: Any) -> Callable[[F], F]:
    """Register a built-in: it never changes its input in place, and outputs data that
    was checked already."""
    return _registry.action(name, isolate_inputs=False, json_output=True, **options)


@attrs.frozen(kw_only=True)
class RespondParams:
    """Parameters of ``webhook.respond``: the status, headers and body of the answer
    (the body is the node's input when not given)."""

    status: Any = 200
    headers: Any = attrs.field(factory=dict)
    body: Any = None


def _check_params(params: Mapping[str, Any]) -> Iterable[Problem]:
    status = params.get("status", 200)
    if not contains_template(status):
        problem = _status_problem(status)
        if problem:
            yield Problem(path="status", message=problem)
    headers = params.get("headers", {})
    if not isinstance(headers, Mapping):
        if not contains_template(headers):
            yield Problem(path="headers", message="must be a mapping of header names to text")
        return
    for name, value in headers.items():
        if not contains_template(value):
            problem = _header_problem(name, value)
            if problem:
                yield Problem(path=f"headers.{name}", message=problem)


def _status_problem(status: Any) -> str | None:
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        return f"must be an HTTP status from 200 to 599, not {status!r}"
    return None


def _header_problem(name: Any, value: Any) -> str | None:
    if not isinstance(name, str) or not _TOKEN.match(name):
        return f"{name!r} is not a header name"
    if name.lower() in _SERVERS_HEADERS:
        return f"{name} is the server's to write"
    if not isinstance(value, str) or any(mark in value for mark in "\r\n\0"):
        return f"the value of {name} must be text on one line, not {value!r}"
    return None


@action(
    RESPOND_ACTION,
    params=RespondParams,
    check=_check_params,
    description="Answer the request that started the execution (a webhook.trigger with "
    "respond: by_node); pass the answer on",
)
def respond(ctx: NodeContext) -> dict[str, Any]:
    """Outputs the answer: ``status``, ``headers`` and ``body`` (the input when no body
    is given). A text body is sent as text, anything else as JSON."""
    params: RespondParams = ctx.params
    problem = _status_problem(params.status)
    if problem is None and not isinstance(params.headers, Mapping):
        problem = "headers must be a mapping of header names to text"
    for name, value in dict(params.headers).items() if problem is None else ():
        problem = _header_problem(name, value)
        if problem:
            break
    if problem:
        raise NodeError(f"the response cannot be sent: {problem}", code="invalid_params")
    body = ctx.input if params.body is None else params.body
    return {"status": params.status, "headers": dict(params.headers), "body": body}


WEBHOOK_ACTIONS: tuple[Action, ...] = tuple(_registry[name] for name in _registry)
