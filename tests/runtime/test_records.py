"""The JSON form of records: what ``prana show --json`` prints and the API returns."""

from __future__ import annotations

import attrs

import prana


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
