"""What a webhook's sender is answered, by the ``respond`` of the ``webhook.trigger``
that started the execution (:class:`prana.WebhookRoute`):

- ``immediately``: 202 with the execution's id (the app's own route does that);
- ``when_done``: once the execution stops, its output (200, as JSON), or a problem
  if it failed;
- ``by_node``: the answer the first ``webhook.respond`` node to complete built (its
  status, headers and body), while the execution goes on.

An execution that has not stopped (or answered) within the route's
``respond_within``, or that waits, is answered 202 with its id and status, as at once.
A request sent again with its ``Idempotency-Key`` gets the answer the first one's
execution has made by then.
"""

from __future__ import annotations

from typing import Any

import anyio
import orjson
from starlette.responses import Response

import prana
from prana.events import NodeCompleted

from ._problems import HTTPProblem
from ._requests import json_response

_NO_BODY = (204, 304)


async def answer_by_node(
    engine: prana.Engine, route: prana.WebhookRoute, handle: prana.ExecutionHandle
) -> Response:
    """The answer of the execution ``handle`` started: its first ``webhook.respond``
    node's, as soon as that node completes."""
    events = handle.events()
    try:
        with anyio.move_on_after(route.respond_within):
            async for event in events:
                if isinstance(event, NodeCompleted) and event.node_key in route.responders:
                    return response_of(event.run.output)
    finally:
        events.close()
    return answer_of(route, await engine.get(handle.id))


def answer_of(route: prana.WebhookRoute, execution: prana.Execution) -> Response:
    """The answer ``execution`` has made as it is now."""
    if route.respond == "by_node":
        for run in execution.node_runs:
            if run.node_key in route.responders and run.status == "completed":
                return response_of(run.output)
    elif execution.status == "completed":
        return json_response(execution.output)
    if execution.status == "completed":
        raise HTTPProblem(
            500,
            "No answer",
            f"execution {execution.id} completed without running a webhook.respond node, "
            "so the request has no answer; see it with prana explain",
        )
    if execution.finished:
        raise HTTPProblem(
            500,
            "The workflow did not answer",
            f"execution {execution.id} is {execution.status} before it answered; see why "
            f"with prana explain {execution.id}",
        )
    return json_response({"execution_id": execution.id, "status": execution.status}, 202)


def response_of(answer: Any) -> Response:
    """The response a ``webhook.respond`` node's output describes: a text body as
    text, any other as JSON (unless its headers give a ``Content-Type``)."""
    status, headers, body = answer["status"], answer["headers"], answer["body"]
    media_type: str | None
    if status in _NO_BODY or body is None:
        content, media_type = b"", None
    elif isinstance(body, str):
        content, media_type = body.encode(), "text/plain; charset=utf-8"
    else:
        content, media_type = orjson.dumps(body), "application/json"
    if any(name.lower() == "content-type" for name in headers):
        media_type = None
    return Response(content, status_code=status, headers=headers, media_type=media_type)
