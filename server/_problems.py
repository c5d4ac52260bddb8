"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns says what is wrong and what to do, with a status a client
can act on. The engine's errors map to statuses here, in one place; anything else is
a bug of prana's: it is logged with its traceback, and the client gets a 500 that
says so without the traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

import prana
from prana import errors

logger = logging.getLogger("prana.server")

PROBLEM = "application/problem+json"


class HTTPProblem(Exception):
    """A request the API refuses: its status, a short title and what to do."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(problem: HTTPProblem, instance: str) -> Response:
    body = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
        **problem.extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else problem.headers
    return Response(
        orjson.dumps(body), status_code=problem.status, media_type=PROBLEM, headers=headers
    )


def no_webhook(exc: prana.TriggerError) -> HTTPProblem:
    """A request no webhook answers: 405 with the methods its path is answered for,
    if any; else 404 with the routes that are."""
    if exc.methods:
        allow = {"Allow": ", ".join(exc.methods)}
        return HTTPProblem(405, "Method not allowed", str(exc), headers=allow)
    return HTTPProblem(404, "No webhook here", str(exc))


async def not_routed(request: Request, exc: Exception) -> Response:
    """What no route takes: a path (404) or a method (405), as problem details."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else None
    path = request.url.path
    if status == 405:
        # Every route of the path, not only the first (several take one path).
        methods = {
            method
            for route in request.app.router.routes
            if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
            for method in route.methods or ()
        }
        # A mount (the web view's static files) says its own.
        allowed = ", ".join(sorted(methods)) or (headers or {}).get("Allow", "")
        problem = HTTPProblem(
            405,
            "Method not allowed",
            f"{path} takes {allowed}, not {request.method}",
            headers={"Allow": allowed},
        )
    elif status == 404:
        problem = HTTPProblem(
            404,
            "Not found",
            f"nothing is at {path}: the API's paths are listed in /api/openapi.json, and "
            "the web view is at /ui",
        )
    else:
        problem = HTTPProblem(status, "Refused", str(getattr(exc, "detail", exc)), headers=headers)
    return problem_response(problem, path)


def key_reused(key: str | None, execution_id: str, header: str = "Idempotency-Key") -> HTTPProblem:
    """An idempotency key (the ``Idempotency-Key`` header, or the one a webhook
    trigger names) sent again with another body: a client's mistake that answering
    with the first execution would hide."""
    return HTTPProblem(
        422,
        f"{header} reused",
        f"the {header} {key!r} started execution {execution_id} with a different "
        "body; send a new key to start another execution, or the first body to get the "
        "first one's",
        execution_id=execution_id,
    )


def webhook_key_reused(
    headers: Mapping[str, str], route: prana.WebhookRoute, execution_id: str
) -> HTTPProblem:
    """A webhook request whose idempotency key (its ``Idempotency-Key``, else the
    header its trigger names) started an execution with another body."""
    header = route.idempotency_header
    if header is None or "idempotency-key" in headers:
        header = "Idempotency-Key"
    return key_reused(headers.get(header), execution_id, header)


def problem_of(exc: BaseException) -> HTTPProblem:
    """The problem a client is told of for an error of the engine's."""
    if isinstance(exc, HTTPProblem):
        return exc
    if isinstance(exc, errors.WorkflowValidationError):
        if exc.problems and all(problem.path == "trigger" for problem in exc.problems):
            # A workflow with several triggers, started without choosing one.
            return HTTPProblem(400, "Choose a trigger", exc.problems[0].message)
        return HTTPProblem(
            422,
            "Invalid workflow",
            str(exc),
            problems=[{"path": p.path, "message": p.message} for p in exc.problems],
        )
    if isinstance(exc, errors.ExecutionNotFound):
        return HTTPProblem(404, "Not found", str(exc))
    if isinstance(exc, errors.InvalidTransition):
        return HTTPProblem(409, "Not possible now", str(exc))
    if isinstance(exc, errors.ExecutionExists):
        return HTTPProblem(409, "Started already", str(exc), execution_id=exc.execution_id)
    if isinstance(exc, (errors.TriggerError, errors.InvalidData, errors.ExpressionError)):
        return HTTPProblem(422, "Invalid input", str(exc))
    if isinstance(exc, errors.StoreError):
        logger.warning("store error: %s", exc)
        return HTTPProblem(503, "Store unavailable", f"{exc}; the request can be tried again later")
    if isinstance(exc, prana.PranaError):
        return HTTPProblem(400, "Refused", str(exc))
    logger.error("error answering a request", exc_info=exc)
    return HTTPProblem(
        500,
        "Internal error",
        "prana failed to answer this request; the daemon's log has the details",
    )
