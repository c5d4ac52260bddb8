"""The web view's pictures as SVG text: a workflow's graph (from :mod:`._layout`),
each node in its state, and the timeline of an execution's node runs.

A state is shown three ways: a colour, an icon and a word, so that it reads without
colour too. Each node links to its drawer (``?node=KEY``; with htmx, the drawer is
loaded in place).
"""

from __future__ import annotations

from collections.abc import Mapping

from markupsafe import escape

import prana

from ._layout import Layout

# state -> (icon, label)
STATES = {
    "pending": ("○", "pending"),
    "running": ("\u25b6", "running"),  # a right-pointing triangle
    "waiting": ("\u2016", "waiting"),  # a double vertical line
    "completed": ("✓", "completed"),
    "failed": ("✗", "failed"),
    "skipped": ("\u2013", "skipped"),  # an en dash
    "cancelled": ("⊘", "cancelled"),
    "queued": ("\u22ef", "queued"),  # a midline ellipsis
    "timed_out": ("\u29d6", "timed out"),  # an hourglass
}


def node_states(execution: prana.Execution) -> dict[str, tuple[str, int]]:
    """Each node's state in ``execution`` and how many runs it has, by its latest
    run (a node without one is pending, or skipped)."""
    states: dict[str, tuple[str, int]] = {}
    for run in execution.node_runs:
        if run.status == "retried":
            state = "running"
        else:
            state = {"suspended": "waiting"}.get(run.status, run.status)
        count = states.get(run.node_key, ("", 0))[1]
        states[run.node_key] = (state, count + (run.status != "retried"))
    for key in execution.skipped:
        states.setdefault(key, ("skipped", 0))
    return states


def graph_svg(
    layout: Layout, states: Mapping[str, tuple[str, int]] | None = None, link: str = ""
) -> str:
    """The graph as an ``<svg>`` element; nodes in ``states`` (else pending, or
    plain when ``states`` is ``None``: a workflow, not a run) and linked to
    ``{link}?node=KEY`` when ``link`` is given."""
    parts = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="workflow graph" width="{layout.width:.0f}" height="{layout.height:.0f}" '
        f'viewBox="0 0 {layout.width:.0f} {layout.height:.0f}">'
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>'
    ]
    for edge in layout.edges:
        (x1, y1), (x2, y2) = edge.start, edge.end
        if edge.back:
            low = max(layout.boxes[edge.connection.from_].y, layout.boxes[edge.connection.to].y)
            low += max(
                layout.boxes[edge.connection.from_].height, layout.boxes[edge.connection.to].height
            )
            low += 14
            path = (
                f"M{x1:.0f},{y1:.0f} C{x1 + 50:.0f},{y1:.0f} {x1 + 50:.0f},{low:.0f} "
                f"{x1:.0f},{low:.0f} L{x2:.0f},{low:.0f} C{x2 - 50:.0f},{low:.0f} "
                f"{x2 - 50:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
            )
            kind = "edge back"
        else:
            bend = max(30.0, (x2 - x1) / 2)
            path = (
                f"M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} "
                f"{x2:.0f},{y2:.0f}"
            )
            kind = "edge"
        parts.append(f'<path class="{kind}" d="{path}" marker-end="url(#arrow)"/>')
    for key, box in layout.boxes.items():
        node = box.node
        state, runs = (states or {}).get(key, ("pending", 0))
        icon, label = STATES.get(state, ("?", state))
        css = f"node state-{state}" if states is not None else "node"
        title = escape(_fit(node.name or key, 24))
        parts.append(
            f'<g class="{css}" id="node-{escape(key)}" data-key="{escape(key)}" '
            f'data-state="{state}" transform="translate({box.x:.0f},{box.y:.0f})">'
        )
        if link:
            href = f"{link}?node={escape(key)}"
            parts.append(
                f'<a href="{href}" hx-get="{link}/nodes/{escape(key)}" hx-target="#drawer" '
                f'hx-push-url="{href}">'
            )
        parts.append(
            f'<rect width="{box.width:.0f}" height="{box.height:.0f}" rx="6"/>'
            f'<text class="title" x="10" y="17">{title}</text>'
            f'<text class="type" x="10" y="31">{escape(_fit(node.type, 26))}</text>'
        )
        if states is not None:
            more = f" \u00d7{runs}" if runs > 1 else ""  # times sign
            parts.append(f'<text class="state" x="10" y="45">{icon} {label}{more}</text>')
        for port, y in box.inputs.items():
            parts.append(f'<circle class="port" cx="0" cy="{y:.0f}" r="4"/>')
            if port != "main":
                parts.append(f'<text class="port" x="8" y="{y + 4:.0f}">{escape(port)}</text>')
        for port, y in box.outputs.items():
            parts.append(f'<circle class="port" cx="{box.width:.0f}" cy="{y:.0f}" r="4"/>')
            if port != "main":
                parts.append(
                    f'<text class="port" x="{box.width - 8:.0f}" y="{y + 4:.0f}" '
                    f'text-anchor="end">{escape(port)}</text>'
                )
        if link:
            parts.append("</a>")
        described = f"{node.name} ({key})" if node.name else key
        parts.append(f"<title>{escape(described)}: {label}</title></g>")
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(execution: prana.Execution, *, width: float = 720.0, most: int = 200) -> str:
    """A Gantt chart of the execution's node runs (the last ``most``): one bar per
    run from its start to its end, in the colour of how it ended."""
    runs = [r for r in execution.node_runs if r.started_at is not None][-most:]
    if not runs:
        return '<p class="muted">No node has run yet.</p>'
    begin = min(r.started_at or 0.0 for r in runs)
    end = max((r.finished_at or r.started_at or begin) for r in runs)
    span = max(end - begin, 1e-3)
    label_width, row = 170.0, 18.0
    scale = (width - label_width - 60) / span
    height = row * len(runs) + 24
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-label="timeline of node runs">'
    ]
    for i, run in enumerate(runs):
        start = run.started_at or begin
        finish = run.finished_at if run.finished_at is not None else end
        x = label_width + (start - begin) * scale
        bar = max(2.0, (finish - start) * scale)
        y = i * row + 4
        state = {"suspended": "waiting"}.get(run.status, run.status)
        took = _took(finish - start)
        name = escape(run.node_key) + (f" #{run.run_index + 1}" if run.run_index else "")
        parts.append(
            f'<text x="0" y="{y + 12:.0f}">{name}</text>'
            f'<rect class="bar state-{state}" x="{x:.1f}" y="{y:.0f}" width="{bar:.1f}" '
            f'height="{row - 5:.0f}"><title>{name}: {state}, {took}</title></rect>'
            f'<text class="took" x="{x + bar + 4:.1f}" y="{y + 12:.0f}">{took}</text>'
        )
    parts.append(
        f'<text class="muted" x="{label_width:.0f}" y="{height - 4:.0f}">0</text>'
        f'<text class="muted" x="{width - 60:.0f}" y="{height - 4:.0f}" text-anchor="end">'
        f"{_took(span)}</text></svg>"
    )
    return "".join(parts)


def _fit(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"  # an ellipsis


def _took(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
