"""What the CLI shows: live progress while a workflow runs, and the report after.

On a terminal the live view redraws a progress bar and the most recent nodes in
place; elsewhere it prints one plain line per event. Both write to stderr so that
stdout carries only the report.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import anyio

from prana import _events as events
from prana._records import Execution, NodeRun, Suspension

_LIVE_NODES = 10
_REDRAW_SECONDS = 0.05


def use_color(stream: TextIO) -> bool:
    """Colors on a terminal, unless NO_COLOR is set."""
    return stream.isatty() and "NO_COLOR" not in os.environ


class _Style:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def status(self, status: str) -> str:
        code = {
            "completed": "32",
            "failed": "31",
            "cancelled": "33",
            "retried": "33",
            "skipped": "2",
            "running": "36",
        }
        return self(status, code.get(status, "0"))


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _ended(run: NodeRun) -> str:
    """A plain line for a run that ended (completed, failed, or failed and tried again)."""
    if run.status == "completed":
        return f"{run.node_key:<20} completed -> {run.port} in {_ms(run.duration_ms)}"
    message = f": {run.error.message}" if run.error else ""
    if run.status == "retried":
        return f"{run.node_key:<20} attempt {run.attempt} failed{message}"
    return f"{run.node_key:<20} {run.status}{message}"


class PlainProgress:
    """One line per node event, with the time since the execution started."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._started: float | None = None

    def __call__(self, event: events.Event) -> None:
        line = None
        if isinstance(event, events.NodeStarted):
            line = f"{event.node_key:<20} started (run {event.run_index})"
        elif isinstance(event, (events.NodeCompleted, events.NodeFailed)):
            line = _ended(event.run)
        elif isinstance(event, events.NodeRetrying):
            line = f"{_ended(event.run)}; attempt {event.next_attempt} in " + _ms(
                (event.at - event.time) * 1000
            )
        elif isinstance(event, events.NodeSkipped):
            line = f"{event.node_key:<20} skipped"
        elif isinstance(event, events.EventsDropped):
            line = f"({event.count} events not shown)"
        if line is not None:
            self._write(event.time, line)

    def caught_up(self, execution: Execution) -> None:
        """A line for each run ``execution`` ended before its events reach here (a
        daemon's stream that joins a running execution begins with it as it is),
        timed, like the lines after, from the execution's start."""
        if execution.started_at is not None:
            self._started = execution.started_at
        for run in execution.node_runs:
            if run.status in ("completed", "failed", "retried") and run.finished_at is not None:
                self._write(run.finished_at, _ended(run))

    def _write(self, moment: float, line: str) -> None:
        if self._started is None:
            self._started = moment
        self._stream.write(f"[{(moment - self._started) * 1000:9.2f} ms] {line}\n")
        self._stream.flush()

    def close(self) -> None:
        """Nothing to tidy up."""


class LiveProgress:
    """A progress bar and the latest node runs, redrawn in place on a terminal."""

    def __init__(self, stream: TextIO, title: str) -> None:
        self._stream = stream
        self._title = title
        self._style = _Style(True)
        self._rows: dict[tuple[str, int], str] = {}
        self._progress = 0.0
        self._drawn = 0
        self._last_draw = 0.0
        self._started = time.monotonic()

    def __call__(self, event: events.Event) -> None:
        style = self._style
        if isinstance(event, events.NodeStarted):
            self._rows[(event.node_key, event.run_index)] = f"{style('▶', '36')} {event.node_key}"
        elif isinstance(event, (events.NodeCompleted, events.NodeFailed)):
            run = event.run
            mark = style("✓", "32") if run.status == "completed" else style("✗", "31")
            port = f" -> {run.port}" if run.port else ""
            self._rows[(run.node_key, run.run_index)] = (
                f"{mark} {run.node_key:<22} {style(_ms(run.duration_ms), '2')}{port}"
            )
            self._progress = event.progress
        elif isinstance(event, events.NodeRetrying):
            run = event.run
            self._rows[(run.node_key, run.run_index)] = (
                f"{style('↻', '33')} {run.node_key:<22} "
                f"{style(f'attempt {run.attempt} failed, trying again', '33')}"
            )
        elif isinstance(event, events.NodeSkipped):
            self._rows[(event.node_key, -1)] = style(f"· {event.node_key:<22} skipped", "2")
            self._progress = event.progress
        now = time.monotonic()
        if now - self._last_draw >= _REDRAW_SECONDS:
            self._draw(now)

    async def tick(self) -> None:
        """Redraw every so often until cancelled, so that a long-running node shows as
        running and the clock moves between events."""
        while True:
            await anyio.sleep(_REDRAW_SECONDS * 2)
            self._draw(time.monotonic())

    def _draw(self, now: float) -> None:
        width = 30
        filled = int(self._progress * width)
        bar = self._style("━" * filled, "32") + self._style("─" * (width - filled), "2")
        elapsed = _ms((now - self._started) * 1000)
        lines = [f"{self._title}  {bar} {self._progress:4.0%}  {elapsed}"]
        lines.extend(f"  {row}" for row in list(self._rows.values())[-_LIVE_NODES:])
        out = self._stream
        if self._drawn:
            out.write(f"\x1b[{self._drawn}F")
        for line in lines:
            out.write(f"\x1b[2K{line}\n")
        for _ in range(self._drawn - len(lines)):
            out.write("\x1b[2K\n")
        out.flush()
        self._drawn = max(self._drawn, len(lines))
        self._last_draw = now

    def close(self) -> None:
        """Erase the live view; the report that follows says it all."""
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F\x1b[0J")
            self._stream.flush()
        self._drawn = 0


def render_report(
    execution: Execution,
    *,
    color: bool,
    children: Mapping[str, Execution] | None = None,
    every_run: bool = False,
    verbose: bool = False,
) -> str:
    """The report ``prana run`` prints: status, timeline, skipped nodes, error, what
    it waits for and how to answer it, output. ``children``: the child executions it
    waits for (and theirs), by id, where known. A timeline of more than
    :data:`FOLD_PAST` runs shows its first and last ones, unless ``every_run``;
    ``verbose`` adds each run's parameters, input sources and output."""
    children = children or {}
    style = _Style(color)
    when = (
        f"in {_ms(execution.duration_ms)}"
        if execution.finished
        else f"({len(execution.suspensions)} node{'s' if len(execution.suspensions) != 1 else ''} waiting)"
        if execution.status == "suspended"
        else "(not finished)"
    )
    lines = [
        f"Execution {execution.id} of {execution.workflow_id} v{execution.workflow_version}: "
        f"{style.status(execution.status)} {when}",
        "",
    ]
    if execution.status == "queued":
        key = execution.concurrency_key
        lines.append(
            f"Queued: it starts once an execution with concurrency key {key!r} ends "
            f"(prana list --status queued; cancel it with prana cancel {execution.id})"
            if key is not None
            else f"Queued: the next engine to look at the queue starts it (prana cancel "
            f"{execution.id} cancels it)"
        )
        return "\n".join(lines) + "\n"
    if execution.runs_left_out:
        lines.append(
            style(
                f"({execution.runs_left_out} earlier runs not shown: "
                f"prana show {execution.id} lists them all)",
                "2",
            )
        )
    lines.extend(
        timeline(
            execution.node_runs,
            style,
            started_at=execution.started_at,
            every_run=every_run,
            verbose=verbose,
            execution_id=execution.id,
        )
    )
    if execution.skipped:
        lines.append(style(f"Skipped: {', '.join(execution.skipped)}", "2"))
    if execution.error is not None:
        error = execution.error
        where = f" at node {error.node_key!r}" if error.node_key else ""
        lines.extend(["", style(f"Error [{error.code}]{where}: {error.message}", "31")])
    if execution.suspensions:
        lines.extend(["", "Waiting:"])
        lines.extend(_waiting_lines(execution, children, "  "))
    if execution.status == "paused":
        lines.extend(["", f"Paused: nothing new runs until 'prana resume {execution.id}'"])
    if execution.status == "completed":
        lines.extend(["", "Output:", json.dumps(execution.output, indent=2, ensure_ascii=False)])
    return "\n".join(lines) + "\n"


# The longest a wait's data is shown in a report (``prana show --json`` shows it whole).
_DATA_SHOWN = 400


def _waiting_lines(
    execution: Execution, children: Mapping[str, Execution], indent: str, depth: int = 0
) -> list[str]:
    """What each waiting node of ``execution`` waits for, and how to answer it: a
    node waiting for a child execution is answered by answering the child."""
    lines = []
    for suspension in execution.suspensions:
        lines.append(
            f"{indent}{suspension.node_key} ({suspension.kind})" + _waiting_detail(suspension)
        )
        if suspension.data is not None:
            shown = json.dumps(suspension.data, ensure_ascii=False)
            if len(shown) > _DATA_SHOWN:
                shown = shown[: _DATA_SHOWN - 3] + "..."
            lines.append(f"{indent}  data: {shown}")
        child_id = suspension.child_execution_id
        if child_id is not None:
            child = children.get(child_id)
            if child is None:
                lines.append(
                    f"{indent}  waits for child execution {child_id}: prana show {child_id}"
                )
            elif child.suspensions and depth < 5:
                lines.append(
                    f"{indent}  waits for child execution {child_id} ({child.workflow_id}), "
                    "which waits at:"
                )
                lines.extend(_waiting_lines(child, children, indent + "    ", depth + 1))
            else:
                lines.append(
                    f"{indent}  waits for child execution {child_id} ({child.workflow_id}), "
                    f"which is {child.status}: prana show {child_id}"
                )
        elif suspension.token is not None:
            lines.append(f"{indent}  resume with: prana resume {suspension.token} --data '{{...}}'")
        else:
            lines.append(
                f"{indent}  resume with: prana resume {execution.id} --node "
                f"{suspension.node_key} --data '{{...}}'"
            )
    return lines


def _waiting_detail(suspension: Suspension) -> str:
    parts = []
    if suspension.token is not None:
        parts.append(f"token {suspension.token}")
    if suspension.wake_at is not None:
        moment = datetime.datetime.fromtimestamp(suspension.wake_at, datetime.UTC)
        parts.append(f"until {moment.isoformat(timespec='seconds')}, then '{suspension.wake_port}'")
    return f": {'; '.join(parts)}" if parts else ""


def render_list(executions: Sequence[Execution], *, color: bool) -> str:
    """The table ``prana list`` prints: id, workflow, status, start, what it waits for."""
    if not executions:
        return "No executions.\n"
    style = _Style(color)
    rows = [("id", "workflow", "status", "started", "waiting")]
    for execution in executions:
        started = (
            datetime.datetime.fromtimestamp(execution.started_at, datetime.UTC).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
            if execution.started_at is not None
            else "-"
        )
        waiting = ", ".join(
            f"{s.node_key}" + (f" token={s.token}" if s.token else "")
            for s in execution.suspensions
        )
        rows.append(
            (
                execution.id,
                f"{execution.workflow_id} v{execution.workflow_version}",
                execution.status,
                started,
                waiting or "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for number, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        if number == 0:
            lines.append(style("  ".join([*cells, row[4]]), "1"))
        else:
            cells[2] = style.status(row[2]) + " " * (widths[2] - len(row[2]))
            lines.append("  ".join([*cells, row[4]]))
    return "\n".join(lines) + "\n"


# A timeline longer than this shows its first and last runs (``--all``: every one).
FOLD_PAST = 40
_FOLD_KEEP = 15  # runs shown at each end of a folded timeline
_SHOWN = 200  # the most characters of a value a verbose timeline shows


def timeline(
    runs: tuple[NodeRun, ...],
    style: Any,
    *,
    started_at: float | None = None,
    every_run: bool = False,
    verbose: bool = False,
    execution_id: str = "ID",
) -> list[str]:
    """The audit trail as a table: node, run, attempt, status, port, when it started
    (after the execution), duration; the error of each failed or retried run below
    it; with ``verbose``, its parameters, input sources and output."""
    width = max([len("node"), *(len(run.node_key) for run in runs)])
    header = (
        f"  {'#':>3}  {'node':<{width}}  {'run':>3}  {'try':>3}  {'status':<9}  {'port':<10}  "
        f"{'started':>10}  {'duration':>10}"
    )
    rows = [style(header, "1")]
    shown: list[NodeRun | None] = list(runs)
    if len(runs) > FOLD_PAST and not every_run:
        shown = [*runs[:_FOLD_KEEP], None, *runs[-_FOLD_KEEP:]]
    for run in shown:
        if run is None:
            folded = len(runs) - 2 * _FOLD_KEEP
            rows.append(
                style(f"  ... {folded} runs not shown (prana show {execution_id} --all)", "2")
            )
            continue
        status = style.status(run.status) + " " * (9 - len(run.status))
        began = (
            "+" + _ms((run.started_at - started_at) * 1000)
            if run.started_at is not None and started_at is not None
            else "-"
        )
        rows.append(
            f"  {run.execution_index:>3}  {run.node_key:<{width}}  {run.run_index:>3}  "
            f"{run.attempt:>3}  {status}  {run.port or '-':<10}  {began:>10}  "
            f"{_ms(run.duration_ms):>10}"
        )
        if run.error is not None and run.status in ("failed", "retried"):
            rows.append(style(f"       [{run.error.code}] {run.error.message}", "31"))
        if verbose:
            rows.extend(_details(run))
    return rows


def _details(run: NodeRun) -> list[str]:
    """A run's parameters, where its input came from, and its output, shortened."""
    details = []
    if run.params is not None:
        details.append(f"       params: {_short(run.params)}")
    if run.inputs:
        sources = ", ".join(f"{port} <- #{source}" for port, source in run.inputs)
        details.append(f"       input:  {sources}")
    if run.status == "completed":
        details.append(f"       output: {_short(run.output)}")
    return details


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
