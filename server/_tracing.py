"""OpenTelemetry spans for executions and node runs, made from the engine's events.

Only while an OpenTelemetry SDK is set up (a tracer provider other than the API's
default, which does nothing): then the daemon listens to every event, and with no SDK
it builds none. An execution's span runs from its start (or from where it went on
after a wait) to its next stop (its end, a wait, a pause), with a child span per node
run, from the run's own start and end times; a failed run or execution has an error
status. The spans of an execution are made when it stops, a moment after (``delay``),
so that the trace context of the request that started it (``traceparent``, read by
:meth:`Tracing.started_by`) is known by then: the execution's span is its child. A
long stretch without a stop is cut every ``most_runs`` node runs.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping

import anyio
import attrs
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import ProxyTracerProvider, Status, StatusCode, TracerProvider

import prana
from prana import events

logger = logging.getLogger("prana.server")

_STOPS = (*events.EXECUTION_ENDED, events.ExecutionSuspended, events.ExecutionPaused)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


@attrs.define
class _Stretch:
    """What an execution did since it started or last stopped."""

    execution_id: str
    workflow_id: str
    started_at: float
    runs: list[prana.NodeRun] = attrs.field(factory=list)
    ended_at: float = 0.0
    status: str = "running"
    error: str | None = None


class Tracing:
    """Spans from one engine's events (see the module docstring)."""

    def __init__(
        self,
        engine: prana.Engine,
        tracer_provider: TracerProvider | None = None,
        *,
        delay: float = 1.0,
        most_runs: int = 1000,
    ) -> None:
        self._engine = engine
        provider = tracer_provider or trace.get_tracer_provider()
        self.enabled = not isinstance(provider, ProxyTracerProvider)
        self._tracer = trace.get_tracer("prana", prana.__version__, tracer_provider=provider)
        self._delay = delay
        self._most_runs = most_runs
        self._parents: dict[str, Context] = {}
        self._stretches: dict[str, _Stretch] = {}
        self._stopped: deque[tuple[float, _Stretch]] = deque()

    def started_by(self, execution_id: str, headers: Mapping[str, str]) -> None:
        """The request with ``headers`` started ``execution_id``: its trace context
        (``traceparent``) is the parent of the execution's spans."""
        if self.enabled:
            self._parents[execution_id] = propagate.extract(headers)

    async def run(self) -> None:
        """Make spans from the engine's events until it stops."""
        if not self.enabled:
            return
        subscription = self._engine.events(limit=100_000)
        try:
            while True:
                with anyio.move_on_after(self._wait()):
                    event = await anext(subscription, None)
                    if event is None:
                        break
                    self._take(event)
                self._emit_due()
        finally:
            subscription.close()
            self._emit_due(everything=True)

    def _wait(self) -> float:
        if not self._stopped:
            return float("inf")
        return max(0.0, self._stopped[0][0] - anyio.current_time())

    def _take(self, event: events.Event) -> None:
        stretch = self._stretches.get(event.execution_id)
        if stretch is None:
            workflow_id = getattr(event, "workflow_id", "")
            stretch = self._stretches[event.execution_id] = _Stretch(
                event.execution_id, workflow_id, event.time
            )
        if isinstance(event, (events.NodeCompleted, events.NodeFailed, events.NodeRetrying)):
            stretch.runs.append(event.run)
        if isinstance(event, _STOPS) or len(stretch.runs) >= self._most_runs:
            del self._stretches[event.execution_id]
            stretch.ended_at = event.time
            stretch.status = getattr(event, "status", "running")
            error = getattr(event, "error", None)
            stretch.error = error.message if error is not None else None
            self._stopped.append((anyio.current_time() + self._delay, stretch))

    def _emit_due(self, *, everything: bool = False) -> None:
        now = anyio.current_time()
        while self._stopped and (everything or self._stopped[0][0] <= now):
            _, stretch = self._stopped.popleft()
            try:
                self._emit(stretch)
            except Exception:  # an exporter's failure must not stop the daemon
                logger.exception("cannot make the spans of execution %s", stretch.execution_id)

    def _emit(self, stretch: _Stretch) -> None:
        parent = self._parents.pop(stretch.execution_id, None)  # the first stretch's
        span = self._tracer.start_span(
            f"execution {stretch.workflow_id}".strip(),
            context=parent,
            start_time=_ns(stretch.started_at),
            attributes={
                "prana.execution.id": stretch.execution_id,
                "prana.workflow.id": stretch.workflow_id,
                "prana.execution.status": stretch.status,
            },
        )
        if stretch.status in ("failed", "timed_out"):
            span.set_status(Status(StatusCode.ERROR, stretch.error))
        within = trace.set_span_in_context(span)
        for run in stretch.runs:
            started = run.started_at if run.started_at is not None else stretch.started_at
            node = self._tracer.start_span(
                f"node {run.node_key}",
                context=within,
                start_time=_ns(started),
                attributes={
                    "prana.node.key": run.node_key,
                    "prana.node.run_index": run.run_index,
                    "prana.node.attempt": run.attempt,
                    "prana.node.status": run.status,
                    "prana.node.port": run.port or "",
                },
            )
            if run.error is not None:
                node.set_status(Status(StatusCode.ERROR, run.error.message))
                node.set_attribute("prana.error.code", run.error.code)
            node.end(_ns(run.finished_at if run.finished_at is not None else stretch.ended_at))
        span.end(_ns(stretch.ended_at))
