"""OpenTelemetry spans of executions and node runs, under the request that started
them, read with the SDK's in-memory exporter."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.server.client import request
from tests.server.conftest import daemon, example

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


async def test_an_execution_s_spans_are_children_of_the_request_that_started_it(
    tmp_path: Path,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    headers = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
    async with daemon(
        tmp_path / "d.db", [example("approval.yaml")], tracer_provider=provider
    ) as url:
        start = "/api/workflows/approval/executions?wait=10"
        done = (await request(url, "POST", start, {"amount": 40}, headers=headers)).json()
    # The daemon has stopped: the spans of executions that stopped have gone out.
    spans = {span.name: span for span in exporter.get_finished_spans()}
    execution = spans["execution approval"]
    assert format(execution.context.trace_id, "032x") == TRACE
    assert format(execution.parent.span_id, "016x") == PARENT
    assert execution.attributes["prana.execution.id"] == done["id"]
    assert execution.attributes["prana.execution.status"] == "completed"
    nodes = [s for s in exporter.get_finished_spans() if s.name.startswith("node ")]
    assert [s.name for s in sorted(nodes, key=lambda s: s.start_time)] == [
        "node start",
        "node large",
        "node auto_pay",
    ]
    assert all(s.parent.span_id == execution.context.span_id for s in nodes)
    assert all(execution.start_time <= s.start_time <= s.end_time <= execution.end_time
               for s in nodes)  # fmt: skip
    assert spans["node large"].attributes["prana.node.port"] == "false"
    assert execution.status.status_code is StatusCode.UNSET
