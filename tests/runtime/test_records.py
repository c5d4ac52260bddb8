"""The JSON form of records and events: what ``prana show --json`` prints, the API
returns and event streams send."""

from __future__ import annotations

import attrs
import orjson

import prana
from prana import events


def test_a_node_runs_json_has_every_field_of_the_record() -> None:
    error = prana.ErrorInfo(code="boom", message="m", details={"a": [1]}, node_key="b")
    run = prana.NodeRun(
        node_key="b",
        run_index=2,
        execution_index=7,
        status="failed",
        attempt=3,
        port="error",
        output={"rows": [1, (2, 3)]},
        error=error,
        started_at=1.5,
        finished_at=2.5,
        duration_ms=1000.0,
        inputs=(("main", 5), ("other", 6)),
        params={"url": "https://example.com"},
    )
    data = run.to_dict()
    assert set(data) == {field.name for field in attrs.fields(prana.NodeRun)}
    assert data["error"] == error.to_dict()
    assert data["inputs"] == [["main", 5], ["other", 6]]
    assert (data["output"], data["params"]) == (run.output, run.params)
    assert data == {
        **attrs.asdict(run, recurse=False),
        "error": error.to_dict(),
        "inputs": data["inputs"],
    }


def test_an_events_json_is_every_field_as_json_data() -> None:
    error = prana.ErrorInfo(code="boom", message="m", details={"a": [1]}, node_key="b")
    run = prana.NodeRun(
        node_key="b", run_index=0, execution_index=2, status="failed", error=error,
        output=error.to_dict(), inputs=(("main", 1),),
    )  # fmt: skip
    suspension = prana.Suspension(
        execution_id="e", node_key="ask", run_index=0, execution_index=3, kind="webhook",
        token="wh_x", wake_port="timeout", resume_port="main", data={"prompt": ["yes", "no"]},
    )  # fmt: skip
    every = [
        events.NodeStarted(
            execution_id="e", sequence=1, time=1.0, node_key="b", run_index=0,
            execution_index=2, attributes={"tenant": {"id": 7}, "by": error},
        ),
        events.NodeFailed(execution_id="e", sequence=2, time=2.0, node_key="b", run=run, progress=0.5),
        events.ExecutionSuspended(execution_id="e", sequence=3, time=3.0, suspensions=(suspension,)),
        events.ExecutionFailed(execution_id="e", sequence=4, time=4.0, error=error),
        events.ExecutionCompleted(execution_id="e", sequence=5, time=5.0),
    ]  # fmt: skip
    for event in every:
        data = event.to_dict()
        assert data["type"] == type(event).__name__
        # The same JSON as the record converted whole, field by field.
        assert orjson.loads(orjson.dumps(data)) == orjson.loads(
            orjson.dumps({"type": type(event).__name__, **attrs.asdict(event)})
        )
    assert every[1].to_dict()["run"] == run.to_dict()
    assert every[2].to_dict()["suspensions"][0]["token"] == "wh_x"
