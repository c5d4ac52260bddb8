"""The live terminal view and the plain progress lines."""

from __future__ import annotations

import io

import prana
from prana.actors._progress import LiveProgress, PlainProgress


def node_events() -> list[prana.events.Event]:
    run = prana.NodeRun(
        node_key="fetch",
        run_index=0,
        execution_index=1,
        status="completed",
        port="main",
        duration_ms=12.5,
    )
    return [
        prana.events.NodeStarted(
            execution_id="e", sequence=1, time=0.0, node_key="fetch", run_index=0, execution_index=1
        ),
        prana.events.NodeCompleted(
            execution_id="e", sequence=2, time=0.0125, node_key="fetch", run=run, progress=0.5
        ),
        prana.events.NodeSkipped(
            execution_id="e", sequence=3, time=0.013, node_key="other", progress=1.0
        ),
    ]


def test_live_view_draws_a_bar_and_rows_in_place_and_erases_itself() -> None:
    stream = io.StringIO()
    view = LiveProgress(stream, "shop 01a2")
    first, second, third = node_events()
    view(first)  # drawn at once: the first draw is never throttled
    assert "shop 01a2" in stream.getvalue()
    assert "▶\x1b[0m fetch" in stream.getvalue()
    view._last_draw = 0.0  # let the next events draw without waiting
    view(second)
    view._last_draw = 0.0
    view(third)
    out = stream.getvalue()
    assert "✓\x1b[0m fetch" in out
    assert "12.50 ms" in out
    assert "skipped" in out
    assert "100%" in out
    assert "\x1b[2F" in out  # moved up over the previous drawing (two lines) to redraw it
    view.close()
    assert stream.getvalue().endswith("\x1b[3F\x1b[0J")  # up over all three lines, erased


def test_plain_progress_prints_one_line_per_event() -> None:
    stream = io.StringIO()
    view = PlainProgress(stream)
    for event in node_events():
        view(event)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[     0.00 ms] fetch                started (run 0)",
        "[    12.50 ms] fetch                completed -> main in 12.50 ms",
        "[    13.00 ms] other                skipped",
    ]


def test_a_retry_shows_as_a_failed_attempt_and_the_next_one() -> None:
    failed = prana.NodeRun(
        node_key="fetch",
        run_index=0,
        execution_index=1,
        status="retried",
        attempt=1,
        error=prana.ErrorInfo(code="action_error", message="OSError: reset"),
    )
    retrying = prana.events.NodeRetrying(
        execution_id="e",
        sequence=2,
        time=10.0,
        node_key="fetch",
        run=failed,
        next_attempt=2,
        at=12.5,
    )
    stream = io.StringIO()
    plain = PlainProgress(stream)
    plain(retrying)
    assert stream.getvalue().splitlines() == [
        "[     0.00 ms] fetch                attempt 1 failed: OSError: reset; attempt 2 in 2.50 s"
    ]
    live_stream = io.StringIO()
    live = LiveProgress(live_stream, "shop")
    live(retrying)
    assert "attempt 1 failed, trying again" in live_stream.getvalue()


def test_a_report_shows_attempts_start_times_errors_and_with_verbose_what_ran() -> None:
    from prana.actors._progress import render_report

    error = prana.ErrorInfo(code="http_503", message="the service is down")
    runs = (
        prana.NodeRun(node_key="start", run_index=0, execution_index=0, status="completed",
                      port="main", output={"n": 1}, started_at=100.0, finished_at=100.001,
                      duration_ms=1.0),
        prana.NodeRun(node_key="call", run_index=0, execution_index=1, status="retried",
                      attempt=1, error=error, inputs=(("main", 0),), params={"url": "x"},
                      started_at=100.002, finished_at=100.012, duration_ms=10.0),
        prana.NodeRun(node_key="call", run_index=0, execution_index=2, status="completed",
                      attempt=2, port="main", output={"ok": True}, inputs=(("main", 0),),
                      params={"url": "x"}, started_at=101.0, finished_at=101.02,
                      duration_ms=20.0),
    )  # fmt: skip
    execution = prana.Execution(
        id="e1", workflow_id="w", workflow_version=1, status="completed", trigger="start",
        node_runs=runs, started_at=100.0, finished_at=101.02,
    )  # fmt: skip
    plain = render_report(execution, color=False)
    verbose = render_report(execution, color=False, verbose=True)
    rows = [line.split() for line in plain.splitlines() if line[:6].strip().isdigit()]
    assert [row[1:4] for row in rows] == [
        ["start", "0", "1"],
        ["call", "0", "1"],
        ["call", "0", "2"],
    ]
    assert [row[-4:] for row in rows] == [
        ["+0.00", "ms", "1.00", "ms"],
        ["+2.00", "ms", "10.00", "ms"],
        ["+1.00", "s", "20.00", "ms"],
    ]
    assert "       [http_503] the service is down" in plain
    assert "params:" not in plain
    assert '       params: {"url": "x"}' in verbose
    assert "       input:  main <- #0" in verbose
    assert '       output: {"ok": true}' in verbose
