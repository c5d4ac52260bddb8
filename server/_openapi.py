"""The API's OpenAPI 3.1 document, served at ``/api/openapi.json``.

Written out by hand from one table, route by route; a test checks that every route
the app serves is in it, with the same methods, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import prana

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_EXECUTION = {"$ref": "#/components/schemas/Execution"}
_ANY = {"description": "Any JSON value"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_EXECUTION_ID = _path("execution_id", "the execution's id (32 hex digits)")
_WORKFLOW_ID = _path("workflow_id", "a served workflow's id")
_WAIT = _query("wait", "seconds to wait for it to end or wait (0-300)", {"type": "number"})
# What a start takes besides the input (of a served workflow, or of a definition sent).
_START_OPTIONS = [
    _WAIT,
    _query("trigger", "the trigger node, when it has several", {"type": "string"}),
    _query(
        "priority",
        "replaces the workflow's settings.priority if the execution is queued",
        {"type": "integer"},
    ),
    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
]
_STATUS = {
    "type": "string",
    "enum": list(prana.EXECUTION_STATUSES),
}
_FILTER = {
    "type": "object",
    "properties": {
        "status": _STATUS,
        "workflow": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        "reason": {"type": "string"},
    },
}

# (method, path): (summary, parameters, request body, success status, response)
_OPERATIONS: dict[tuple[str, str], tuple[str, list[Any], Any, int, Any]] = {
    ("get", "/healthz"): ("The process answers", [], None, 200, _json({"type": "object"}, "ok")),
    ("get", "/readyz"): (
        "The engine's background services are running (503 while one fails)",
        [],
        None,
        200,
        _json({"type": "object"}, "the engine's health"),
    ),
    ("get", "/api/openapi.json"): ("This document", [], None, 200, _json({}, "OpenAPI 3.1")),
    ("get", "/metrics"): (
        "Prometheus metrics: executions by status, live executions, commits, "
        "services, HTTP requests",
        [],
        None,
        200,
        {"description": "text/plain", "content": {"text/plain": {}}},
    ),
    ("get", "/api/status"): (
        "The daemon's health, live executions, executions by status, workflows served",
        [],
        None,
        200,
        _json(
            {"type": "object"},
            "{ok, engine, live_executions, leader, engines, executions, workflows, services}",
        ),
    ),
    ("get", "/api/workflows"): (
        "The workflows served",
        [],
        None,
        200,
        _json({"type": "object"}, "{workflows: [{id, version, name, description}]}"),
    ),
    ("post", "/api/workflows"): (
        "Serve a workflow (its definition as JSON); 422 lists every problem",
        [],
        {"type": "object"},
        201,
        _json({"type": "object"}, "{id, version, served}"),
    ),
    ("post", "/api/workflows/validate"): (
        "Check a workflow without serving it; 422 lists every problem with its path",
        [],
        {"type": "object"},
        200,
        _json({"type": "object"}, "{valid, id, version, warnings: [{path, message}]}"),
    ),
    ("get", "/api/workflows/{workflow_id}"): (
        "A served workflow's definition",
        [_WORKFLOW_ID],
        None,
        200,
        _json({"type": "object"}, "the definition"),
    ),
    ("delete", "/api/workflows/{workflow_id}"): (
        "Serve a workflow no more (webhooks, events and schedules start nothing; it is "
        "no longer kept in the store); its executions carry on",
        [_WORKFLOW_ID],
        None,
        204,
        {"description": "no longer served"},
    ),
    ("post", "/api/workflows/{workflow_id}/executions"): (
        "Start an execution, the body its input. Idempotency-Key starts it once (200 "
        "with the first one's execution); wait answers once it stops",
        [_WORKFLOW_ID, *_START_OPTIONS],
        _ANY,
        201,
        _json(_EXECUTION, "the execution"),
    ),
    ("post", "/api/executions"): (
        "Run a definition once, without serving it (body: {workflow, input}); the same "
        "options as starting a served workflow; 422 with every problem if it is not valid",
        _START_OPTIONS,
        {
            "type": "object",
            "required": ["workflow"],
            "properties": {"workflow": {"type": "object"}, "input": _ANY},
        },
        201,
        _json(_EXECUTION, "the execution"),
    ),
    ("get", "/api/executions"): (
        "Executions, newest first, without their audit trails",
        [
            _query("status", "only those with this status", _STATUS),
            _query("workflow", "only those of this workflow", {"type": "string"}),
            _query("limit", "at most this many (1-1000)", {"type": "integer"}),
            _query("since", "started at or after (epoch seconds or ISO 8601)", {}),
            _query("until", "started before (epoch seconds or ISO 8601)", {}),
            _query("cursor", "the next_cursor of the previous page", {"type": "string"}),
        ],
        None,
        200,
        _json({"type": "object"}, "{executions: [...], next_cursor}"),
    ),
    ("get", "/api/executions/{execution_id}"): (
        "One execution with its audit trail (with wait, once it has stopped: ended or waiting)",
        [_EXECUTION_ID, _WAIT],
        None,
        200,
        _json(_EXECUTION, "the execution"),
    ),
    ("get", "/api/executions/{execution_id}/explain"): (
        "Why the execution is where it is, in words",
        [_EXECUTION_ID],
        None,
        200,
        _json({"type": "object"}, "{execution_id, status, moving, reasons, text}"),
    ),
    ("get", "/api/executions/{execution_id}/events"): (
        "Its events as server-sent events (ids: event numbers), from a snapshot or "
        "after Last-Event-ID, to its end",
        [_EXECUTION_ID],
        None,
        200,
        {"description": "text/event-stream", "content": {"text/event-stream": {}}},
    ),
    ("post", "/api/executions/{execution_id}/{action}"): (
        "cancel (body: {reason}), pause, unpause, retry, resume (body: {data, node}); "
        "rerun (body: {from_node, input}) starts a new execution from a node",
        [_EXECUTION_ID, _path("action", "cancel, pause, unpause, retry, resume or rerun")],
        {"type": "object"},
        200,
        _json(_EXECUTION, "the execution (rerun: the new one, 201)"),
    ),
    ("get", "/api/events"): (
        "Every execution's events as server-sent events, resumable with Last-Event-ID",
        [],
        None,
        200,
        {"description": "text/event-stream", "content": {"text/event-stream": {}}},
    ),
    ("post", "/api/resume/{token}"): (
        "Answer the node waiting for a token; the body is its data",
        [_path("token", "the wait's token")],
        _ANY,
        200,
        _json(_EXECUTION, "the execution when it next waits or ends"),
    ),
    ("get", "/api/schedules"): (
        "The schedule triggers, with when each fires next and whether it is paused",
        [],
        None,
        200,
        _json({"type": "object"}, "{schedules: [{workflow_id, trigger, cron, next_at, paused}]}"),
    ),
    ("post", "/api/schedules/{workflow_id}/{trigger}/{action}"): (
        "pause or resume a schedule (in every engine on the store), or fire it now",
        [
            _WORKFLOW_ID,
            _path("trigger", "the schedule trigger's node key"),
            _path("action", "pause, resume or fire"),
        ],
        None,
        200,
        _json({"type": "object"}, "the schedule; fire: {execution_id, status} (202)"),
    ),
    ("post", "/resume/{token}"): (
        "Answer a wait by its signed resume_path (no API token); the body is its data",
        [_path("token", "the wait's token"), _query("signature", "from resume_path", {})],
        _ANY,
        200,
        _json(_EXECUTION, "the execution when it next waits or ends"),
    ),
    ("post", "/api/bulk/{action}"): (
        "cancel, pause, unpause or retry every execution a filter selects",
        [_path("action", "cancel, pause, unpause or retry")],
        _FILTER,
        200,
        _json({"type": "object"}, "{action, executions: [{id, changed, status | error}]}"),
    ),
}


def openapi_document() -> dict[str, Any]:
    """The API described as OpenAPI 3.1."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), (summary, parameters, body, status, reply) in _OPERATIONS.items():
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {str(status): reply, "default": _PROBLEM},
        }
        if parameters:
            operation["parameters"] = parameters
        if body is not None:
            operation["requestBody"] = {"content": {"application/json": {"schema": body}}}
        if path.startswith("/api/") and path != "/api/openapi.json":
            operation["security"] = [{"token": []}]
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "prana", "version": prana.__version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Execution": {
                    "type": "object",
                    "description": "Execution.to_dict(): id, workflow_id, status, input, "
                    "error, timings, suspensions, last_event, and with the audit trail "
                    "node_runs, order, skipped, output, vars",
                    "required": ["id", "workflow_id", "status"],
                }
            },
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem details: what is wrong, what to do",
                    "content": {
                        "application/problem+json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "title": {"type": "string"},
                                    "status": {"type": "integer"},
                                    "detail": {"type": "string"},
                                },
                            }
                        }
                    },
                }
            },
        },
    }
