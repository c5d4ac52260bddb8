"""The daemon's HTTP API: a Starlette app over one :class:`prana.Engine` (DESIGN §12).

It decides no workflow semantics: each route reads a request, calls one method of the
engine's public API and writes its answer as JSON. The routes are listed, with what
each takes and answers, in the OpenAPI document (:mod:`._openapi`, served at
``/api/openapi.json``; a test keeps the two in step) and in docs/daemon.md: health
and metrics; the workflows served (list, get, serve one more, serve one no more,
validate); executions (start a served workflow, or run a definition once without
serving it; list, get, explain, control one by one and in bulk); answers to waits
(by token, or by a signed path without an API token); live events as server-sent
events (:mod:`._streams`); schedules; webhooks (``METHOD /hooks/{path}``, signed
with a per-path secret when given one); and the web view under ``/ui`` (:mod:`._ui`).

Under ``/api`` a request carries ``Authorization: Bearer TOKEN`` with one of the
daemon's tokens (when it has any). Bodies are JSON, at most ``max_body`` bytes; at
most ``max_streams`` event streams are open at once.

The module is past 600 lines because it is the API's one table of routes and their
handlers, each a few lines from request to engine call to answer; what they share
(bodies, problems, replies to webhooks, streams, the view) lives in modules of its own.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
)
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import attrs
from opentelemetry.trace import TracerProvider
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

import prana

from ._metrics import CONTENT_TYPE as METRICS_TYPE
from ._metrics import Metrics, SharedFigures
from ._openapi import openapi_document
from ._problems import (
    HTTPProblem,
    key_reused,
    no_webhook,
    not_routed,
    problem_of,
    problem_response,
    webhook_key_reused,
)
from ._replies import answer_by_node, answer_of
from ._requests import (
    BodyReader,
    authorize,
    bulk_filter,
    check_signed,
    control_options,
    cursor_of,
    cursor_option,
    definition_and_input,
    definition_of,
    fields_of,
    int_option,
    json_response,
    prefer_wait,
    refuse_unknown,
    sign,
    time_option,
    wait_option,
    webhook_body,
)
from ._streams import EventLog, all_stream, execution_stream
from ._tracing import Tracing
from ._ui import Ui

JSON = "application/json"
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB
DEFAULT_MAX_STREAMS = 1000
MAX_WAIT = 300.0  # the longest ?wait= a request may hold a connection, in seconds
_CONTROLS = ("cancel", "pause", "unpause", "retry", "rerun", "resume")
BULK_MOST = 1000  # the most executions one bulk request changes
_STATUSES = prana.EXECUTION_STATUSES
_LIST_QUERY = ("status", "workflow", "since", "until", "limit", "cursor")
_START = ("wait", "trigger", "priority")

Handler = Callable[[Request], Awaitable[Response]]


class Api:
    """The routes' shared state: the engine, the tokens, the limits."""

    def __init__(
        self,
        engine: prana.Engine,
        *,
        tokens: Collection[str],
        max_body: int,
        max_streams: int,
        webhook_secrets: Mapping[str, str],
        signing_key: str | None,
        tracer_provider: TracerProvider | None,
        shared_metrics: SharedFigures | None,
    ) -> None:
        self.engine = engine
        self.tokens = tuple(token.encode() for token in tokens)
        self.webhook_secrets = {
            path.strip("/"): secret.encode() for path, secret in webhook_secrets.items()
        }
        self.signing_key = signing_key.encode() if signing_key else None
        self.bodies = BodyReader(max_body)
        self.max_streams = max_streams
        self.streams = 0
        self.log = EventLog(engine)
        self._document = openapi_document()
        self.metrics = Metrics(engine, shared_metrics)
        self.tracing = Tracing(engine, tracer_provider)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """While the app is served: the event log listens for its streams."""
        async with anyio.create_task_group() as group:
            group.start_soon(self.log.run)
            group.start_soon(self.tracing.run)
            group.start_soon(self.metrics.share)
            yield
            self.log.close()
            group.cancel_scope.cancel()  # the spans of executions that stopped go out now

    # ------------------------------------------------------------------ plumbing

    def route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: list[str] | None = None,
        private: bool = True,
        query: tuple[str, ...] | None = (),
    ) -> Route:
        """The route of ``path`` to ``handler`` with the API's rules around it: the
        token check (``private``), the query parameters it takes (``query``; ``None``:
        any), every error answered as problem details, and the request counted in the
        metrics. A query parameter the route does not take is refused: a misspelt
        ``?wiat=30`` would otherwise answer at once, a misspelt filter list all."""

        async def answer(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if private:
                    authorize(request, self.tokens)
                if query is not None:
                    refuse_unknown(request.query_params, query, "Invalid query", "query parameter")
                response = await handler(request)
            except Exception as exc:
                response = problem_response(problem_of(exc), request.url.path)
            self.metrics.answered(path, request.method, response.status_code, started)
            return response

        return Route(path, answer, methods=methods)

    def view(self, execution: prana.Execution) -> dict[str, Any]:
        """An execution as the API shows it: ``to_dict``, and with a signing key,
        each wait's ``resume_path``, signed, which answers it without an API token."""
        data = execution.to_dict()
        if self.signing_key is not None:
            for suspension in data["suspensions"]:
                token = suspension.get("token")
                if token is not None:
                    signature = sign(self.signing_key, token.encode())
                    suspension["resume_path"] = f"/resume/{token}?signature={signature}"
        return data

    # ------------------------------------------------------------------ health

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def metrics_page(self, request: Request) -> Response:
        return Response(await self.metrics.page(), media_type=METRICS_TYPE)

    async def openapi(self, request: Request) -> Response:
        return json_response(self._document)

    async def status(self, request: Request) -> Response:
        health = self.engine.health()
        counts = await self.engine.count_executions()
        return json_response(
            {
                "ok": health.ok,
                "engine": self.engine.owner,  # which daemon answered (prana serve --processes)
                "live_executions": health.live_executions,
                "leader": health.leader,
                "engines": list(health.engines),  # alive on the store: every daemon
                "executions": counts,
                "workflows": len(self.engine.served()),
                "services": _services(health),
            }
        )

    async def readyz(self, request: Request) -> Response:
        health = self.engine.health()
        services = _services(health)
        body = {"ok": health.ok, "live_executions": health.live_executions, "services": services}
        return json_response(body, 200 if health.ok else 503)

    # ------------------------------------------------------------------ workflows

    async def list_workflows(self, request: Request) -> Response:
        served = [
            {"id": w.id, "version": w.version, "name": w.name, "description": w.description}
            for w in self.engine.served()
        ]
        return json_response({"workflows": served})

    async def register_workflow(self, request: Request) -> Response:
        workflow = await self.engine.keep_serving(definition_of(await self.bodies.json(request)))
        served = any(w is workflow for w in self.engine.served())
        return json_response(
            {"id": workflow.id, "version": workflow.version, "served": served}, 201
        )

    async def validate_workflow(self, request: Request) -> Response:
        workflow = await self.engine.load_workflow(definition_of(await self.bodies.json(request)))
        warnings = [{"path": w.path, "message": w.message} for w in self.engine.warnings(workflow)]
        body = {"valid": True, "id": workflow.id, "version": workflow.version, "warnings": warnings}
        return json_response(body)

    async def stop_serving(self, request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        if not await self.engine.stop_serving(workflow_id):
            self._served(workflow_id)  # 404, naming the ones served
        return Response(status_code=204)

    async def get_workflow(self, request: Request) -> Response:
        workflow = self._served(request.path_params["workflow_id"])
        return json_response(prana.workflow_to_dict(workflow))

    def _served(self, workflow_id: str) -> prana.Workflow:
        served = self.engine.served()
        for workflow in served:
            if workflow.id == workflow_id:
                return workflow
        ids = ", ".join(w.id for w in served) or "none"
        raise HTTPProblem(
            404, "Not found", f"no workflow {workflow_id!r} is served here (served: {ids})"
        )

    # ------------------------------------------------------------------ executions

    async def start(self, request: Request) -> Response:
        workflow = self._served(request.path_params["workflow_id"])
        return await self._start(request, workflow, await self.bodies.json(request))

    async def run_once(self, request: Request) -> Response:
        """Run a definition sent with its input, once, without serving it: its
        webhooks and schedules start nothing (the engine keeps the definition with
        the execution, so that any engine can carry it on)."""
        definition, data = definition_and_input(await self.bodies.json(request))
        workflow = await self.engine.load_workflow(definition)  # 422 with every problem
        return await self._start(request, workflow, data)

    async def _start(self, request: Request, workflow: prana.Workflow, data: Any) -> Response:
        wait = wait_option(request, MAX_WAIT)
        key = request.headers.get("idempotency-key")
        trigger = request.query_params.get("trigger")
        priority = None  # the workflow's, unless given (the engine checks its range)
        if "priority" in request.query_params:
            priority = int_option(request, "priority", 0, -(2**31), 2**31 - 1)
        try:
            # Only the id is kept: a handle keeps its execution's events (for a first
            # events() call) while it lives.
            execution_id = (
                await self.engine.start(
                    workflow, data, trigger=trigger, idempotency_key=key, priority=priority
                )
            ).id
        except prana.errors.ExecutionExists as exists:  # the key's first start
            if not exists.same_input:
                raise key_reused(key, exists.execution_id) from None
            execution = await self._stopped(exists.execution_id, wait)
            return json_response(self.view(execution), 200)
        self.tracing.started_by(execution_id, request.headers)
        execution = await self._stopped(execution_id, wait)
        return json_response(self.view(execution), 201)

    async def _stopped(self, execution_id: str, wait: float) -> prana.Execution:
        """The execution once it stops (ends or waits) where ``engine.run`` would
        return it, or as it is after ``wait`` seconds."""
        if wait > 0:
            with anyio.move_on_after(wait):
                stopped = await self.engine.wait(
                    execution_id, until=lambda execution: execution.status != "running"
                )
                return await self.engine.follow(stopped)
        return await self.engine.get(execution_id)

    async def list_executions(self, request: Request) -> Response:
        query = request.query_params
        status = query.get("status")
        if status is not None and status not in _STATUSES:
            raise HTTPProblem(
                400,
                "Invalid query",
                f"status must be one of {', '.join(_STATUSES)}, not {status!r}",
            )
        limit = int_option(request, "limit", 100, 1, 1000)
        executions = await self.engine.list_executions(
            status=status,
            workflow=query.get("workflow"),
            limit=limit + 1,  # one more says whether there is a next page
            started_after=time_option(request, "since"),
            started_before=time_option(request, "until"),
            older_than=cursor_option(request),
        )
        following = None
        if len(executions) > limit:
            executions = executions[:limit]
            following = cursor_of(executions[-1].started_at or 0.0, executions[-1].id)
        return json_response(
            {"executions": [e.to_dict(runs=False) for e in executions], "next_cursor": following}
        )

    async def get_execution(self, request: Request) -> Response:
        execution_id, wait = request.path_params["execution_id"], wait_option(request, MAX_WAIT)
        if wait > 0:  # once it stops (ends or waits), if it does within wait seconds
            await self._stopped(execution_id, wait)
        return json_response(self.view(await self.engine.get(execution_id)))

    async def explain(self, request: Request) -> Response:
        explanation = await self.engine.explain(request.path_params["execution_id"])
        return json_response(
            {
                "execution_id": explanation.execution_id,
                "status": explanation.status,
                "moving": explanation.moving,
                "reasons": list(explanation.reasons),
                "text": str(explanation),
            }
        )

    async def control(self, request: Request) -> Response:
        action = request.path_params["action"]
        execution_id = request.path_params["execution_id"]
        if action not in _CONTROLS:
            raise HTTPProblem(
                404, "Not found", f"no control {action!r}; use one of {', '.join(_CONTROLS)}"
            )
        options = control_options(action, await self.bodies.json(request))
        if action == "rerun":
            from_node = options.get("from_node")
            if not isinstance(from_node, str):
                raise HTTPProblem(
                    400,
                    "Invalid rerun",
                    'say which node to run from: {"from_node": "KEY"} (and "input" to '
                    "give the trigger a new input)",
                )
            rerun = partial(self.engine.rerun, execution_id, from_node=from_node)
            execution = await (rerun(input=options["input"]) if "input" in options else rerun())
            return json_response(self.view(execution), 201)
        if action == "resume":
            node = options.get("node")
            execution = await self.engine.resume(execution_id, options.get("data"), node=node)
            return json_response(self.view(execution))
        execution = await self._control(action, execution_id, options.get("reason"))
        return json_response(self.view(execution))

    async def _control(self, action: str, execution_id: str, reason: str | None) -> prana.Execution:
        if action == "cancel":
            return await self.engine.cancel(execution_id, reason)
        control: Callable[[str], Awaitable[prana.Execution]] = getattr(self.engine, action)
        return await control(execution_id)

    async def bulk(self, request: Request) -> Response:
        """One control (cancel, pause, unpause, retry) on every execution a filter
        selects (``status``, ``workflow``; at most ``limit``, default and most
        :data:`BULK_MOST`); each one's outcome, changed or refused and why."""
        action = request.path_params["action"]
        if action not in _CONTROLS or action in ("rerun", "resume"):
            raise HTTPProblem(
                404,
                "Not found",
                f"no bulk control {action!r}; use one of cancel, pause, unpause, retry",
            )
        chosen = bulk_filter(await self.bodies.json(request), _STATUSES, BULK_MOST)
        selected = await self.engine.list_executions(
            status=chosen.get("status"),
            workflow=chosen.get("workflow"),
            limit=chosen.get("limit", BULK_MOST),
        )
        outcomes = []
        for execution in selected:
            try:
                changed = await self._control(action, execution.id, chosen.get("reason"))
            except prana.PranaError as exc:
                outcomes.append({"id": execution.id, "changed": False, "error": str(exc)})
            else:
                outcomes.append({"id": execution.id, "changed": True, "status": changed.status})
        return json_response({"action": action, "executions": outcomes})

    async def execution_events(self, request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        await self.engine.get(execution_id)  # 404 before the stream starts
        last = request.headers.get("last-event-id")
        return self.stream(execution_stream(self.log, self.engine, execution_id, last))

    async def all_events(self, request: Request) -> Response:
        return self.stream(all_stream(self.log, request.headers.get("last-event-id")))

    def stream(self, chunks: AsyncGenerator[bytes, None]) -> Response:
        """``chunks`` as a response of server-sent events, counted among the open
        streams (503 past ``max_streams``)."""
        if self.streams >= self.max_streams:
            raise HTTPProblem(
                503,
                "Too many streams",
                f"{self.streams} event streams are open, the most this daemon serves "
                "(prana serve --max-streams); try again later",
            )

        async def counted() -> AsyncIterator[bytes]:
            self.streams += 1
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                self.streams -= 1
                await chunks.aclose()

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(counted(), media_type="text/event-stream", headers=headers)

    async def resume_token(self, request: Request) -> Response:
        data = await self.bodies.json(request)
        execution = await self.engine.resume_token(request.path_params["token"], data)
        return json_response(self.view(execution))

    async def signed_resume(self, request: Request) -> Response:
        """Answer a wait by its signed path (:meth:`view`): no API token needed."""
        token = request.path_params["token"]
        given = request.query_params.get("signature", "")
        if self.signing_key is None or not hmac.compare_digest(
            given.encode(), sign(self.signing_key, token.encode()).encode()
        ):
            raise HTTPProblem(
                403,
                "Not signed",
                "this resume link is not signed by this daemon; ask whoever runs it for the "
                "wait's resume_path, or use POST /api/resume/TOKEN with an API token",
            )
        execution = await self.engine.resume_token(token, await self.bodies.json(request))
        return json_response(self.view(execution))

    # ------------------------------------------------------------------ schedules

    async def list_schedules(self, request: Request) -> Response:
        schedules = [attrs.asdict(s) for s in await self.engine.schedules()]
        return json_response({"schedules": schedules})

    async def schedule_action(self, request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        trigger = request.path_params["trigger"]
        action = request.path_params["action"]
        if action == "fire":
            handle = await self.engine.fire_schedule(workflow_id, trigger)
            return json_response({"execution_id": handle.id, "status": handle.status}, 202)
        if action == "pause":
            return json_response(
                attrs.asdict(await self.engine.pause_schedule(workflow_id, trigger))
            )
        if action == "resume":
            info = await self.engine.resume_schedule(workflow_id, trigger)
            return json_response(attrs.asdict(info))
        raise HTTPProblem(
            404, "Not found", f"no schedule action {action!r}; use pause, resume or fire"
        )

    # ------------------------------------------------------------------ webhooks

    async def hook(self, request: Request) -> Response:
        raw = await self.bodies.raw(request)
        secret = self.webhook_secrets.get(request.path_params["path"].strip("/"))
        if secret is not None:
            check_signed(request, raw, secret)
        body = webhook_body(raw, request.headers.get("content-type", ""))
        try:
            route = self.engine.webhook(request.method, request.path_params["path"])
            handle = await self.engine.start_webhook(
                request.path_params["path"],
                method=request.method,
                headers=dict(request.headers),
                query=fields_of(request.query_params.multi_items()),
                body=body,
                idempotency_key=request.headers.get("idempotency-key"),
            )
        except prana.TriggerError as exc:
            raise no_webhook(exc) from None
        except prana.errors.ExecutionExists as exists:  # a request sent again
            if not exists.same_input:  # the key of another request
                raise webhook_key_reused(request.headers, route, exists.execution_id) from None
            if route.respond != "immediately":
                return answer_of(route, await self.engine.get(exists.execution_id))
            wait = prefer_wait(request, MAX_WAIT)
            first = await self._stopped(exists.execution_id, wait)
            if wait > 0 and first.status != "running":
                return json_response(self.view(first), 200)
            return json_response({"execution_id": first.id, "status": first.status}, 200)
        self.tracing.started_by(handle.id, request.headers)
        if route.respond == "when_done":
            return answer_of(route, await self._stopped(handle.id, route.respond_within))
        if route.respond == "by_node":
            return await answer_by_node(self.engine, route, handle)
        wait = prefer_wait(request, MAX_WAIT)  # a sender that wants the outcome
        if wait > 0:
            execution = await self._stopped(handle.id, wait)
            if execution.status != "running":
                return json_response(self.view(execution), 200)
        return json_response({"execution_id": handle.id, "status": handle.status}, 202)


def _services(health: prana.EngineHealth) -> list[dict[str, Any]]:
    return [{"name": s.name, "state": s.state, "last_error": s.last_error} for s in health.services]


def create_app(
    engine: prana.Engine,
    *,
    tokens: Collection[str] = (),
    max_body: int = DEFAULT_MAX_BODY,
    max_streams: int = DEFAULT_MAX_STREAMS,
    webhook_secrets: Mapping[str, str] | None = None,
    signing_key: str | None = None,
    tracer_provider: TracerProvider | None = None,
    shared_metrics: SharedFigures | None = None,
) -> Starlette:
    """The daemon's app over an open ``engine``: with ``tokens``, requests under
    ``/api`` must carry one; bodies are refused past ``max_body`` bytes, event
    streams past ``max_streams`` at once. :func:`close_streams` ends the streams
    (before a server's graceful shutdown, which waits for open requests).

    ``webhook_secrets`` (webhook path to secret) makes those webhooks take signed
    requests only; with ``signing_key``, each wait gets a signed ``resume_path``
    that answers it without an API token. Spans go to ``tracer_provider`` (default:
    OpenTelemetry's global one; none are made while that is the API's no-op one).
    ``shared_metrics``: one of the daemons of ``prana serve --processes``."""
    api = Api(
        engine,
        tokens=tokens,
        max_body=max_body,
        max_streams=max_streams,
        webhook_secrets=webhook_secrets or {},
        signing_key=signing_key,
        tracer_provider=tracer_provider,
        shared_metrics=shared_metrics,
    )
    hooks = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    post = ["POST"]
    routes = [
        # First the routes most requests take: a request is matched route by route.
        # A webhook's query is its sender's, for the workflow (trigger.query).
        api.route("/hooks/{path:path}", api.hook, methods=hooks, private=False, query=None),
        api.route("/api/resume/{token}", api.resume_token, methods=post),
        # What monitoring polls: whatever it adds changes nothing.
        api.route("/healthz", api.healthz, private=False, query=None),
        api.route("/readyz", api.readyz, private=False, query=None),
        api.route("/metrics", api.metrics_page, private=False, query=None),
        api.route("/api/openapi.json", api.openapi, private=False, query=None),
        api.route("/api/status", api.status),
        api.route("/api/workflows", api.list_workflows),
        api.route("/api/workflows", api.register_workflow, methods=post),
        api.route("/api/workflows/validate", api.validate_workflow, methods=post),
        api.route("/api/workflows/{workflow_id}", api.get_workflow),
        api.route("/api/workflows/{workflow_id}", api.stop_serving, methods=["DELETE"]),
        api.route("/api/workflows/{workflow_id}/executions", api.start, methods=post, query=_START),
        api.route("/api/executions", api.list_executions, query=_LIST_QUERY),
        api.route("/api/executions", api.run_once, methods=post, query=_START),
        api.route("/api/executions/{execution_id}", api.get_execution, query=("wait",)),
        api.route("/api/executions/{execution_id}/events", api.execution_events),
        api.route("/api/executions/{execution_id}/explain", api.explain),
        api.route("/api/events", api.all_events),
        api.route("/api/executions/{execution_id}/{action}", api.control, methods=post),
        api.route("/api/bulk/{action}", api.bulk, methods=post),
        api.route("/api/schedules", api.list_schedules),
        api.route(
            "/api/schedules/{workflow_id}/{trigger}/{action}", api.schedule_action, methods=post
        ),
        api.route(
            "/resume/{token}", api.signed_resume, methods=post, private=False, query=("signature",)
        ),
    ]
    ui = Ui(engine, tokens=api.tokens, bodies=api.bodies, log=api.log, stream=api.stream)
    app = Starlette(
        routes=[*routes, *ui.routes()],
        lifespan=api.lifespan,
        exception_handlers={HTTPException: not_routed},
    )
    app.state.event_log = api.log
    return app


def close_streams(app: Starlette) -> None:
    """End the event streams of an app made by :func:`create_app`."""
    app.state.event_log.close()
