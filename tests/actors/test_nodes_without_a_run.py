"""``nodes.<key>`` of a node that has no run in this execution (skipped, or not run
yet): undefined for ``| default`` and ``is defined``; any other use fails the node,
saying which node and why."""

from __future__ import annotations

import pytest

import prana
from tests.helpers import make_workflow, run


def after_a_branch(expression: str) -> prana.Workflow:
    # With go false, 'maybe' is skipped and 'after' runs all the same.
    return make_workflow(
        {
            "start": "manual.trigger",
            "check": ("logic.if", {"condition": "{{ input.go }}"}),
            "maybe": ("data.set", {"values": {"v": 1}}),
            "after": ("data.set", {"values": {"seen": expression}}),
            "later": "core.noop",
        },
        [
            "start -> check",
            "check.true -> maybe",
            "check.false -> after",
            "maybe -> after",
            "after -> later",
        ],
    )


@pytest.mark.parametrize(
    ("expression", "seen"),
    [
        ("{{ nodes.maybe.output | default('none') }}", "none"),
        ("{{ nodes.maybe.output.v | default(7) }}", 7),
        ("{{ nodes.maybe is defined }}", False),
        ("{{ nodes.maybe.output is defined }}", False),
        ("{{ nodes.later.output | default('not yet') }}", "not yet"),
        ("{{ nodes.check.port }}", "false"),
    ],
)
async def test_a_node_without_a_run_reads_as_undefined_where_a_default_is_given(
    expression: str, seen: object
) -> None:
    result = await run(after_a_branch(expression), {"go": False})
    assert result.status == "completed"
    assert result.outputs["after"] == {"seen": seen}


async def test_the_same_templates_read_the_run_when_there_is_one() -> None:
    result = await run(after_a_branch("{{ nodes.maybe.output.v | default(7) }}"), {"go": True})
    assert result.outputs["after"] == {"seen": 1}


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("{{ nodes.maybe.output.v }}", "node 'maybe' was skipped in this execution"),
        ("{{ nodes.maybe.output.v + 1 }}", "node 'maybe' was skipped in this execution"),
        ("{% if nodes.maybe %}x{% endif %}", "node 'maybe' was skipped in this execution"),
        ("{{ nodes.later.output }}", "node 'later' has not run (yet) in this execution"),
    ],
)
async def test_using_it_without_a_default_fails_the_node_saying_why(
    expression: str, why: str
) -> None:
    result = await run(after_a_branch(expression), {"go": False})
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "expression_error"
    assert result.error.node_key == "after"
    assert why in result.error.message
    assert "| default(...)" in result.error.message
