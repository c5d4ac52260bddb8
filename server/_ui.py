"""The web view at ``/ui``: server-rendered pages of runs and workflows, live while a
run moves (decision 0056).

Pages are Jinja2 templates (``templates/``); the graph and the timeline are SVG
made here (:mod:`._svg`). htmx and its SSE extension, vendored in ``static/``, load
a node's drawer in place and swap the live part of a run's page as its events come
(``/ui/runs/{id}/live`` sends that part re-rendered, at most every
``LIVE_INTERVAL`` seconds). Without JavaScript every page still shows its state, and
links and forms work by plain navigation.

Like the API, it calls only the engine's public methods. With API tokens, a browser
logs in with one and gets a session cookie derived from it (HttpOnly,
``SameSite=Strict``): removing the token from the daemon ends its sessions. Every
form that changes something carries a token bound to the session (checked with the
request's ``Origin``), so another site cannot submit it.
"""

from __future__ import annotations

import hmac
import secrets
import statistics
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import jinja2
import orjson
from markupsafe import escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

import prana

from ._layout import Layout, layout
from ._problems import HTTPProblem, problem_of
from ._requests import BodyReader, cursor_from, cursor_of, moment_of, sign
from ._streams import EventLog
from ._svg import STATES, graph_svg, node_states, timeline_svg

HERE = Path(__file__).parent
SESSION = "prana_session"
LIVE_INTERVAL = 0.25  # seconds between two renders of a run's live part
PAGE = 50  # runs per page, unless the user chooses one of PAGE_SIZES
PAGE_SIZES = (50, 100, 200, 500)
HISTORY = 500  # the runs a workflow's history is drawn from
LAYOUTS_KEPT = 64
STATUSES = prana.EXECUTION_STATUSES
CONTROLS = ("cancel", "pause", "unpause", "retry")


def _stamp(moment: float | None) -> str:
    if moment is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def _took(execution: prana.Execution) -> str:
    if execution.started_at is None:
        return ""
    end = execution.finished_at or time.time()
    seconds = max(0.0, end - execution.started_at)
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


class Ui:
    """The pages of one daemon (see the module docstring)."""

    def __init__(
        self,
        engine: prana.Engine,
        *,
        tokens: tuple[bytes, ...],
        bodies: BodyReader,
        log: EventLog,
        stream: Callable[[AsyncGenerator[bytes, None]], Response],
    ) -> None:
        self.engine = engine
        self.tokens = tokens
        self.bodies = bodies
        self.log = log
        self.stream = stream
        self._secret = secrets.token_bytes(32)  # forms made before a restart are stale
        # Layouts of the workflows drawn lately, by the workflow object (the engine
        # hands out one per definition): the live part of a run's page is drawn
        # again several times a second, and the layout does not change with it.
        self._layouts: dict[int, tuple[prana.Workflow, Layout]] = {}
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["stamp"] = _stamp
        self.templates.filters["took"] = _took
        self.templates.filters["json"] = _json
        self.templates.globals["STATES"] = STATES
        self.templates.globals["signing_in"] = bool(tokens)

    # ------------------------------------------------------------------ sessions

    def _session_of(self, token: bytes) -> str:
        return sign(token, b"prana web view session")

    def _signed_in(self, request: Request) -> str | None:
        """The request's session ("open" without tokens), or ``None``."""
        if not self.tokens:
            return "open"
        cookie = request.cookies.get(SESSION, "")
        for token in self.tokens:
            if hmac.compare_digest(cookie.encode(), self._session_of(token).encode()):
                return cookie
        return None

    def _csrf(self, session: str) -> str:
        return sign(self._secret, session.encode())

    def page(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        """``handler`` behind the sign-in, with errors shown as a page."""

        async def answer(request: Request) -> Response:
            session = self._signed_in(request)
            if session is None:
                if request.method != "GET":
                    return self._error(request, 401, "sign in again: your session has ended")
                target = urllib.parse.quote(str(request.url.path), safe="/")
                return RedirectResponse(f"/ui/login?next={target}", 303)
            request.state.csrf = self._csrf(session)
            try:
                if request.method == "POST":
                    await self._check_form(request, session)
                return await handler(request)
            except Exception as exc:
                problem = problem_of(exc)
                return self._error(request, problem.status, problem.detail)

        return answer

    async def _check_form(self, request: Request, session: str) -> None:
        origin = request.headers.get("origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != request.url.netloc:
            raise HTTPProblem(403, "Forbidden", "this form was sent from another site")
        form = await self.form(request)
        given = form.get("csrf") or request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(given.encode(), self._csrf(session).encode()):
            raise HTTPProblem(
                403, "Forbidden", "this form is stale: reload the page and send it again"
            )

    async def form(self, request: Request) -> dict[str, str]:
        """The request's urlencoded form (read once)."""
        if not hasattr(request.state, "form"):
            raw = await self.bodies.raw(request)
            parsed = urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            request.state.form = dict(parsed)
        form: dict[str, str] = request.state.form
        return form

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        said = request.query_params.get("said", "")
        seal = request.query_params.get("seal", "")
        if said and hmac.compare_digest(seal.encode(), sign(self._secret, said.encode()).encode()):
            values.setdefault("said", said)  # only what this daemon said: no text from links
        body = self.templates.get_template(template).render(
            request=request, csrf=getattr(request.state, "csrf", ""), **values
        )
        return HTMLResponse(body, status)

    def back(self, path: str, said: str, **query: str) -> Response:
        """A redirect to ``path`` (with ``query``) that shows ``said`` there, sealed so
        that a link made elsewhere cannot put words on the page."""
        sealed = {**query, "said": said, "seal": sign(self._secret, said.encode())}
        return RedirectResponse(f"{path}?{urllib.parse.urlencode(sealed)}", 303)

    def _error(self, request: Request, status: int, detail: str) -> Response:
        if request.headers.get("hx-request"):
            return HTMLResponse(f'<p class="trouble">{escape(detail)}</p>', status)
        return self.render(request, "error.html", status, status_code=status, detail=detail)

    # ------------------------------------------------------------------ sign-in

    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", next=request.query_params.get("next", "/ui"))

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        token = form.get("token", "").strip().encode()
        target = form.get("next", "/ui")
        if not target.startswith("/ui"):
            target = "/ui"
        if not any(hmac.compare_digest(token, known) for known in self.tokens):
            return self.render(
                request, "login.html", 401, next=target,
                trouble="that is not one of this daemon's tokens (prana serve --token-file)",
            )  # fmt: skip
        response = RedirectResponse(target, 303)
        response.set_cookie(
            SESSION, self._session_of(token), httponly=True, samesite="strict", path="/ui"
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/ui/login", 303)
        response.delete_cookie(SESSION, path="/ui")
        return response

    # ------------------------------------------------------------------ runs

    async def runs(self, request: Request) -> Response:
        query = {k: v for k, v in request.query_params.items() if v.strip()}
        status = query.get("status")
        if status is not None and status not in STATUSES:
            raise HTTPProblem(400, "Invalid filter", f"status must be one of {', '.join(STATUSES)}")
        size = int(query["size"]) if query.get("size", "").isdigit() else PAGE
        if size not in PAGE_SIZES:
            raise HTTPProblem(
                400, "Invalid page size", f"show {', '.join(map(str, PAGE_SIZES))} runs a page"
            )
        executions = await self.engine.list_executions(
            status=status,
            workflow=query.get("workflow"),
            limit=size + 1,  # one more says whether there is a next page
            started_after=moment_of("since", query.get("since")),
            started_before=moment_of("until", query.get("until")),
            older_than=cursor_from(query.get("cursor")),
        )
        following = None
        if len(executions) > size:
            executions = executions[:size]
            last = executions[-1]
            cursor = cursor_of(last.started_at or 0.0, last.id)
            following = urllib.parse.urlencode({**query, "cursor": cursor})
        return self.render(
            request, "runs.html", executions=executions, query=query, next_page=following,
            statuses=STATUSES, workflows=[w.id for w in self.engine.served()], sizes=PAGE_SIZES,
            first_page=urllib.parse.urlencode({k: v for k, v in query.items() if k != "cursor"}),
        )  # fmt: skip

    async def bulk(self, request: Request) -> Response:
        form = await self.form(request)
        action = form.get("action", "")
        if action not in CONTROLS:
            raise HTTPProblem(400, "Invalid action", f"choose one of {', '.join(CONTROLS)}")
        status = form.get("status") or None
        workflow = form.get("workflow") or None
        selected = await self.engine.list_executions(
            status=status,  # type: ignore[arg-type]
            workflow=workflow,
            limit=1000,
        )
        changed = refused = 0
        for execution in selected:
            try:
                await self._control(action, execution.id)
            except prana.PranaError:
                refused += 1
            else:
                changed += 1
        said = f"{action}: {changed} changed, {refused} refused"
        return self.back("/ui/runs", said, status=status or "", workflow=workflow or "")

    async def _control(self, action: str, execution_id: str) -> prana.Execution:
        if action == "cancel":
            return await self.engine.cancel(execution_id, "cancelled from the web view")
        control: Callable[[str], Awaitable[prana.Execution]] = getattr(self.engine, action)
        return await control(execution_id)

    async def _run_parts(self, execution: prana.Execution) -> dict[str, Any]:
        workflow = await self.engine.workflow_of(execution.id)
        states = node_states(execution)
        settled = sum(1 for state, _ in states.values() if state in ("completed", "skipped"))
        link = f"/ui/runs/{execution.id}"
        explanation = None
        if not execution.finished:
            explanation = await self.engine.explain(execution.id)
        return {
            "execution": execution,
            "workflow": workflow,
            "graph": graph_svg(self._layout(workflow), states, link),
            "timeline": timeline_svg(execution),
            "progress": round(100 * settled / max(1, len(workflow.nodes))),
            "explanation": explanation,
            "waiting": [s for s in execution.suspensions if s.node_key != ""],
        }

    def _layout(self, workflow: prana.Workflow) -> Layout:
        """``workflow``'s layout, made once while it is drawn (the latest 64 kept)."""
        kept = self._layouts.get(id(workflow))
        if kept is not None and kept[0] is workflow:
            return kept[1]
        if len(self._layouts) >= LAYOUTS_KEPT:
            del self._layouts[next(iter(self._layouts))]  # the oldest
        made = layout(workflow)
        self._layouts[id(workflow)] = (workflow, made)
        return made

    async def run(self, request: Request) -> Response:
        execution = await self.engine.get(request.path_params["execution_id"])
        parts = await self._run_parts(execution)
        chosen = request.query_params.get("node")
        drawer = self._drawer(execution, chosen) if chosen else None
        return self.render(request, "run.html", drawer=drawer, **parts)

    def _drawer(self, execution: prana.Execution, node_key: str) -> dict[str, Any]:
        by_index = {run.execution_index: run for run in execution.node_runs}
        runs = []
        for run in execution.node_runs:
            if run.node_key == node_key:
                # What it was given: the outputs of the runs its input came from.
                given = [
                    (port, by_index[index].node_key, by_index[index].output)
                    for port, index in run.inputs
                    if index in by_index
                ]
                runs.append((run, given))
        waits = [s for s in execution.suspensions if s.node_key == node_key]
        return {"node_key": node_key, "runs": runs, "waits": waits}

    async def node(self, request: Request) -> Response:
        execution = await self.engine.get(request.path_params["execution_id"])
        drawer = self._drawer(execution, request.path_params["node_key"])
        return self.render(request, "drawer.html", execution=execution, drawer=drawer)

    async def live(self, request: Request) -> Response:
        execution = await self.engine.get(request.path_params["execution_id"])
        return self.stream(self._live(request, execution.id))

    async def _live(self, request: Request, execution_id: str) -> AsyncGenerator[bytes, None]:
        """The live part of a run's page, again each time its events come."""
        self.log.acquire()
        watching = self.log.watch(execution_id)
        try:
            yield b": listening\n\n"
            while True:
                execution = await self.engine.get(execution_id)
                watching.saw(execution)
                yield self._state_event(request, await self._run_parts(execution))
                if execution.finished:
                    break
                taken: list[Any] | None = []
                while taken == []:
                    taken = await self.log.take_all(watching)
                    if taken == []:
                        yield b": keep-alive\n\n"
                if taken is None:
                    return  # the daemon stops
                await anyio.sleep(LIVE_INTERVAL)  # what comes meanwhile makes one render
            yield b"event: end\ndata: ended\n\n"
        finally:
            self.log.unwatch(watching)
            self.log.release()

    def _state_event(self, request: Request, parts: dict[str, Any]) -> bytes:
        html = self.templates.get_template("live.html").render(
            request=request, csrf=getattr(request.state, "csrf", ""), **parts
        )
        lines = "\n".join(f"data: {line}" for line in html.splitlines() if line.strip())
        return f"event: state\n{lines}\n\n".encode()

    async def control(self, request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        action = request.path_params["action"]
        form = await self.form(request)
        back = f"/ui/runs/{execution_id}"
        if action == "rerun":
            rerun = await self.engine.rerun(execution_id, from_node=form.get("node", ""))
            return self.back(f"/ui/runs/{rerun.id}", f"a rerun of {execution_id}")
        if action == "resume":
            data = _parse_data(form.get("data", ""))
            await self.engine.resume(execution_id, data, node=form.get("node") or None)
            return self.back(back, "answered")
        if action not in CONTROLS:
            raise HTTPProblem(404, "Not found", f"no control {action!r}")
        await self._control(action, execution_id)
        return self.back(back, action)

    # ------------------------------------------------------------------ workflows

    async def workflows(self, request: Request) -> Response:
        schedules = Counter(s.workflow_id for s in await self.engine.schedules())
        counts = {
            w.id: await self.engine.count_executions(workflow=w.id) for w in self.engine.served()
        }
        return self.render(
            request, "workflows.html", workflows=self.engine.served(), schedules=schedules,
            counts=counts,
        )  # fmt: skip

    async def workflow(self, request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        workflow = next((w for w in self.engine.served() if w.id == workflow_id), None)
        if workflow is None:
            raise HTTPProblem(404, "Not found", f"no workflow {workflow_id!r} is served here")
        schedules = [s for s in await self.engine.schedules() if s.workflow_id == workflow_id]
        recent = await self.engine.list_executions(workflow=workflow_id, limit=HISTORY)
        targets = {c.to for c in workflow.connections}
        return self.render(
            request, "workflow.html", workflow=workflow, schedules=schedules,
            graph=graph_svg(self._layout(workflow)), history=await self._history(recent),
            triggers=[n.key for n in workflow.nodes if n.key not in targets],
        )  # fmt: skip

    async def _history(self, recent: list[prana.Execution]) -> dict[str, Any]:
        """Runs per day, duration percentiles, and the slowest nodes of ``recent``."""
        per_day: Counter[str] = Counter()
        durations = []
        for execution in recent:
            if execution.started_at is not None:
                per_day[time.strftime("%Y-%m-%d", time.gmtime(execution.started_at))] += 1
            if execution.finished_at is not None and execution.started_at is not None:
                durations.append(execution.finished_at - execution.started_at)
        percentiles = {}
        if len(durations) >= 2:
            cuts = statistics.quantiles(durations, n=100, method="inclusive")
            percentiles = {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}
        elif durations:
            percentiles = {"p50": durations[0]}
        node_times: defaultdict[str, list[float]] = defaultdict(list)
        for execution in recent[:50]:  # each is read whole: the latest fifty
            full = await self.engine.get(execution.id)
            for run in full.node_runs:
                if run.duration_ms is not None and run.status in ("completed", "failed"):
                    node_times[run.node_key].append(run.duration_ms)
        slowest = sorted(
            (
                (key, statistics.fmean(times), max(times), len(times))
                for key, times in node_times.items()
            ),
            key=lambda row: -row[1],
        )[:10]
        days = sorted(per_day.items())[-30:]
        return {"days": days, "most": max(per_day.values(), default=1), "percentiles": percentiles,
                "slowest": slowest, "count": len(recent)}  # fmt: skip

    async def start(self, request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        workflow = next((w for w in self.engine.served() if w.id == workflow_id), None)
        if workflow is None:
            raise HTTPProblem(404, "Not found", f"no workflow {workflow_id!r} is served here")
        form = await self.form(request)
        data = _parse_data(form.get("input", ""))
        handle = await self.engine.start(workflow, data, trigger=form.get("trigger") or None)
        return self.back(f"/ui/runs/{handle.id}", "started")

    async def schedule(self, request: Request) -> Response:
        params = request.path_params
        workflow_id, trigger, action = params["workflow_id"], params["trigger"], params["action"]
        if action == "pause":
            await self.engine.pause_schedule(workflow_id, trigger)
        elif action == "resume":
            await self.engine.resume_schedule(workflow_id, trigger)
        elif action == "fire":
            await self.engine.fire_schedule(workflow_id, trigger)
        else:
            raise HTTPProblem(404, "Not found", f"no schedule action {action!r}")
        return self.back(f"/ui/workflows/{workflow_id}", f"{trigger} {action}d")

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/ui/runs", 303)

    async def missing(self, request: Request) -> Response:
        return self._error(request, 404, f"there is no page at {request.url.path}")

    def routes(self) -> list[BaseRoute]:
        page, post = self.page, ["POST"]
        return [
            Route("/", self.home),  # a browser pointed at the daemon finds its runs
            Route("/ui", page(self.home)),
            Route("/ui/login", self.login_page),
            Route("/ui/login", self.login, methods=post),
            Route("/ui/logout", self.logout, methods=post),
            Mount("/ui/static", StaticFiles(directory=HERE / "static"), name="static"),
            Route("/ui/runs", page(self.runs)),
            Route("/ui/runs/bulk", page(self.bulk), methods=post),
            Route("/ui/runs/{execution_id}", page(self.run)),
            Route("/ui/runs/{execution_id}/live", page(self.live)),
            Route("/ui/runs/{execution_id}/nodes/{node_key}", page(self.node)),
            Route("/ui/runs/{execution_id}/{action}", page(self.control), methods=post),
            Route("/ui/workflows", page(self.workflows)),
            Route("/ui/workflows/{workflow_id}", page(self.workflow)),
            Route("/ui/workflows/{workflow_id}/start", page(self.start), methods=post),
            Route(
                "/ui/schedules/{workflow_id}/{trigger}/{action}", page(self.schedule), methods=post
            ),
            Route("/ui/{rest:path}", page(self.missing)),  # last: what no page above is
        ]


def _parse_data(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise HTTPProblem(400, "Invalid JSON", f"the data is not JSON: {exc}") from None
