"""Compilation: indexes, loops, trigger selection, warnings."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest

import prana
from tests.helpers import make_workflow

ACTIONS = prana.ActionRegistry()


def test_graph_indexes_edges_both_ways() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "check": ("logic.if", {"condition": True}),
            "a": "core.noop",
            "b": "core.noop",
        },
        ["start -> check", "check.true -> a", "check.false -> b", "check.true -> b"],
    )
    graph = prana.lowlevel.compile_workflow(workflow, ACTIONS)
    assert [str(edge) for edge in graph.outgoing("check", "true")] == [
        "check.true -> a.main",
        "check.true -> b.main",
    ]
    assert [str(edge) for edge in graph.incoming("b")] == [
        "check.false -> b.main",
        "check.true -> b.main",
    ]
    assert graph.outgoing("a", "main") == ()
    assert graph.trigger == "start"
    assert graph.trigger_kind == "manual"
    assert graph.loops == ()


def test_graph_is_frozen() -> None:
    graph = prana.lowlevel.compile_workflow(make_workflow({"start": "manual.trigger"}, []), ACTIONS)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        graph.trigger = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        graph.nodes["x"] = graph.nodes["start"]  # type: ignore[index]


def test_loops_and_their_loop_back_edges_are_found() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "rows": ("core.for_each", {"items": []}),
            "cells": ("core.for_each", {"items": []}),
            "cell": "core.noop",
            "after": "core.noop",
        },
        [
            "start -> rows",
            "rows.loop -> cells",
            "cells.loop -> cell",
            "cell -> cells",
            "cells.done -> rows",
            "rows.done -> after",
        ],
    )
    graph = prana.lowlevel.compile_workflow(workflow, ACTIONS)
    outer, inner = graph.loops
    assert (outer.entry, outer.nodes, outer.parent) == ("rows", ("rows", "cells", "cell"), None)
    assert (inner.entry, inner.nodes, inner.parent) == ("cells", ("cells", "cell"), 0)
    back = {str(graph.edges[i]) for i in (*outer.back_edges, *inner.back_edges)}
    assert back == {"cells.done -> rows.main", "cell.main -> cells.main"}
    assert [str(graph.edges[i]) for i in outer.exit_edges] == ["rows.done -> after.main"]
    assert [str(graph.edges[i]) for i in inner.exit_edges] == ["cells.done -> rows.main"]
    assert graph.nodes["cell"].loops == (1, 0)


def test_unreachable_nodes_are_warnings_and_left_out() -> None:
    workflow = make_workflow(
        {"start": "manual.trigger", "a": "core.noop", "island": "core.noop"}, ["start -> a"]
    )
    graph = prana.lowlevel.compile_workflow(workflow, ACTIONS)
    assert [str(warning) for warning in graph.warnings] == [
        "nodes[2]: node 'island' is never run: no trigger leads to it"
    ]
    assert "island" not in graph.nodes


def test_each_trigger_compiles_the_part_it_reaches() -> None:
    workflow = make_workflow(
        {
            "web": "manual.trigger",
            "cli": "manual.trigger",
            "shared": "core.noop",
            "web_only": "core.noop",
        },
        ["web -> shared", "cli -> shared", "web -> web_only"],
    )
    assert set(prana.lowlevel.compile_workflow(workflow, ACTIONS, trigger="cli").nodes) == {
        "cli",
        "shared",
    }
    web = prana.lowlevel.compile_workflow(workflow, ACTIONS, trigger="web")
    assert set(web.nodes) == {"web", "shared", "web_only"}
    assert web.warnings == ()


def test_engine_caches_graphs_by_id_and_version() -> None:
    engine = prana.Engine()
    workflow = make_workflow({"start": "manual.trigger"}, [])
    assert engine.compile(workflow) is engine.compile(workflow)
    changed = make_workflow({"start": "manual.trigger", "a": "core.noop"}, ["start -> a"])
    assert set(engine.compile(changed).nodes) == {"start", "a"}


def test_compiling_checks_again_against_actions_replaced_since_loading() -> None:
    # Compiling right after loading reuses the load's checks, but only while the
    # registry still has the same actions.
    actions = prana.ActionRegistry()

    @actions.action("test.pick", outputs=("yes", "no"))
    def pick(ctx: prana.NodeContext) -> prana.Output:
        return prana.Output(ctx.input, port="yes")

    workflow = make_workflow(
        {"start": "manual.trigger", "pick": "test.pick", "after": "core.noop"},
        ["start -> pick", "pick.no -> after"],
        actions=actions,
    )
    assert prana.lowlevel.compile_workflow(workflow, actions).nodes["pick"].key == "pick"

    @actions.action("test.pick", outputs=("yes",), replace=True)
    def pick_again(ctx: prana.NodeContext) -> Any:
        return ctx.input

    with pytest.raises(prana.WorkflowValidationError, match="'no'"):
        prana.lowlevel.compile_workflow(workflow, actions)


@pytest.mark.parametrize("nodes", [3, 499, 500, 501, 1700])
def test_a_definitions_hash_is_the_sha256_of_its_canonical_json(nodes: int) -> None:
    # Stored definitions are found by this hash: made in parts, it must stay the hash
    # of the whole definition's JSON with sorted keys, byte for byte.
    import hashlib
    import json

    from prana._compiler import definition_hash
    from prana._loading import workflow_to_dict

    keys = ["start", *(f"n{i}" for i in range(nodes - 1))]
    workflow = prana.load_workflow(
        {
            "id": "héllo-wörld",
            "name": "Grüße ☃",
            "variables": {"z": 1.5, "a": [1e16, -0.0, None, True], "ü": {"b": "c", "a": "d"}},
            "settings": {"timeout": "2m"},
            "nodes": [{"key": "start", "type": "manual.trigger"}]
            + [
                {
                    "key": key,
                    "type": "data.set",
                    "params": {"values": {"zz": f"{{{{ input }}}} ✓ {i}", "aa": 0.1 * i}},
                }
                for i, key in enumerate(keys[1:])
            ],
            "connections": [{"from": a, "to": b} for a, b in itertools.pairwise(keys)],
        }
    )
    whole = json.dumps(workflow_to_dict(workflow), sort_keys=True, separators=(",", ":"))
    assert definition_hash(workflow) == hashlib.sha256(whole.encode()).hexdigest()
