"""What a node's templates know of its run and its loop: ``run.index``,
``run.attempt``, ``run.loop_back``, and inside any loop ``loop.entry`` and
``loop.iteration`` (with a ``core.for_each`` cursor's fields too)."""

from __future__ import annotations

import pytest

import prana
from tests.helpers import make_workflow, run

SEEN = {"run": "{{ run }}", "loop": "{{ loop }}"}


async def test_a_counting_loop_tells_its_nodes_their_run_and_iteration() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "count": (
                "workflow.set_variables",
                {"values": {"i": "{{ vars.i + 1 }}", "came_back": "{{ run.loop_back }}"}},
            ),
            "note": ("data.set", {"values": SEEN}),
            "more": ("logic.if", {"condition": "{{ vars.i < 3 }}"}),
            "after": ("data.set", {"values": SEEN}),
        },
        [
            "start -> count",
            "count -> note",
            "note -> more",
            "more.true -> count",
            "more.false -> after",
        ],
        variables={"i": 0, "came_back": None},
    )
    result = await run(workflow)
    assert result.status == "completed"
    assert [r.output for r in result.runs_of("note")] == [
        {
            "run": {"index": n, "attempt": 1, "loop_back": False},
            "loop": {"entry": "count", "iteration": n},
        }
        for n in range(3)
    ]
    assert result.vars["came_back"] is True  # the entry's last run came over the loop-back
    # Outside the loop there is no loop.
    assert result.outputs["after"] == {
        "run": {"index": 0, "attempt": 1, "loop_back": False},
        "loop": None,
    }


async def test_for_each_keeps_its_cursor_in_loop_and_nested_loops_count_their_own_pass() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "rows": ("core.for_each", {"items": "{{ input }}"}),
            "cells": ("core.for_each", {"items": "{{ loop.item }}"}),
            "cell": (
                "data.set",
                {
                    "values": {
                        "at": "{{ loop.entry }} {{ loop.iteration }} of row {{ nodes.rows.context.iteration }}",
                        "item": "{{ loop.item }}",
                    }
                },
            ),
            "row_done": ("data.set", {"values": {"row": "{{ loop.iteration }}"}}),
        },
        [
            "start -> rows",
            "rows.loop -> cells",
            "cells.loop -> cell",
            "cell -> cells",
            "cells.done -> row_done",
            "row_done -> rows",
        ],
    )
    result = await run(workflow, [["a", "b"], ["c"]])
    assert result.status == "completed"
    assert [r.output for r in result.runs_of("cell")] == [
        {"at": "cells 0 of row 0", "item": "a"},
        {"at": "cells 1 of row 0", "item": "b"},
        {"at": "cells 0 of row 1", "item": "c"},
    ]
    assert [r.output for r in result.runs_of("row_done")] == [{"row": 0}, {"row": 1}]


def test_run_is_a_name_templates_know() -> None:
    make_workflow(
        {"start": "manual.trigger", "a": ("data.set", {"values": {"n": "{{ run.index }}"}})},
        ["start -> a"],
    )
    with pytest.raises(prana.WorkflowValidationError, match="runs"):
        make_workflow(
            {"start": "manual.trigger", "a": ("data.set", {"values": {"n": "{{ runs.index }}"}})},
            ["start -> a"],
        )
