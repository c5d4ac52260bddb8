"""Execution semantics as a user sees them: order, routing, joins, failures, loops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import prana
from tests.helpers import make_workflow, run


def recording_actions(log: list[str]) -> prana.ActionRegistry:
    actions = prana.ActionRegistry()

    @actions.action("test.record")
    async def record(ctx: prana.NodeContext) -> Any:
        log.append(ctx.node_key)
        await anyio.lowlevel.checkpoint()
        return {"node": ctx.node_key, "input": ctx.input}

    @actions.action("test.boom")
    async def boom(ctx: prana.NodeContext) -> Any:
        raise ValueError(f"{ctx.node_key} exploded")

    return actions


async def test_branch_following_order() -> None:
    workflow = make_workflow(
        {
            "trigger": "manual.trigger",
            "a1": "core.noop",
            "a2": "core.noop",
            "b1": "core.noop",
            "b2": "core.noop",
            "merge": "data.merge",
        },
        ["trigger -> a1", "trigger -> b1", "a1 -> a2", "b1 -> b2", "a2 -> merge", "b2 -> merge"],
    )
    result = await run(workflow, {"n": 1})
    assert result.status == "completed"
    assert result.order == ["trigger", "a1", "a2", "b1", "b2", "merge"]
    assert result.output == [{"n": 1}, {"n": 1}]


async def test_ties_follow_connection_order() -> None:
    # b's connection is defined first, so its branch runs first.
    workflow = make_workflow(
        {"start": "manual.trigger", "a": "core.noop", "b": "core.noop"},
        ["start -> b", "start -> a"],
    )
    result = await run(workflow)
    assert result.order == ["start", "b", "a"]


@pytest.mark.parametrize(
    ("amount", "taken", "not_taken"), [(5000, "big", "small"), (10, "small", "big")]
)
async def test_if_takes_one_branch_and_never_runs_the_other(
    amount: int, taken: str, not_taken: str
) -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "check": ("logic.if", {"condition": "{{ input.amount > 1000 }}"}),
            "big": "core.noop",
            "big_after": "core.noop",
            "small": "core.noop",
        },
        ["start -> check", "check.true -> big", "big -> big_after", "check.false -> small"],
    )
    result = await run(workflow, {"amount": amount})
    assert result.status == "completed"
    assert taken in result.order
    assert not_taken not in result.order
    assert result.runs_of("check")[0].port == ("true" if taken == "big" else "false")
    if taken == "small":
        assert set(result.skipped) == {"big", "big_after"}
    assert result.outputs[taken] == {"amount": amount}


@pytest.mark.parametrize(
    ("country", "port"),
    [("DE", "eu"), ("FR", "eu"), ("US", "us"), ("JP", "default"), ("NO", "nordic")],
)
async def test_switch_routes_to_the_first_matching_case_or_default(country: str, port: str) -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "route": (
                "logic.switch",
                {
                    "value": "{{ input.country }}",
                    "cases": [
                        {"port": "eu", "in": ["DE", "FR", "NL"]},
                        {"port": "us", "equals": "US"},
                        {"port": "nordic", "condition": "{{ input.country in ['NO', 'SE'] }}"},
                    ],
                },
            ),
            "eu": "core.noop",
            "us": "core.noop",
            "nordic": "core.noop",
            "other": "core.noop",
        },
        [
            "start -> route",
            "route.eu -> eu",
            "route.us -> us",
            "route.nordic -> nordic",
            "route.default -> other",
        ],
    )
    result = await run(workflow, {"country": country})
    ran = [key for key in ("eu", "us", "nordic", "other") if key in result.order]
    assert ran == ["other" if port == "default" else port]
    assert result.runs_of("route")[0].port == port


async def test_merge_after_if_waits_only_for_the_taken_branch() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "check": ("logic.if", {"condition": "{{ input.vip }}"}),
            "vip": ("data.set", {"values": {"tier": "vip"}}),
            "normal": ("data.set", {"values": {"tier": "normal"}}),
            "merge": "data.merge",
            "after": "core.noop",
        },
        [
            "start -> check",
            "check.true -> vip",
            "check.false -> normal",
            "vip -> merge",
            "normal -> merge",
            "merge -> after",
        ],
    )
    result = await run(workflow, {"vip": False})
    assert result.status == "completed"
    assert result.order == ["start", "check", "normal", "merge", "after"]
    assert result.skipped == ("vip",)
    assert result.outputs["merge"] == [{"tier": "normal"}]


async def test_same_port_join_runs_once_with_both_inputs() -> None:
    log: list[str] = []
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "left": ("data.set", {"values": {"side": "left"}}),
            "right": ("data.set", {"values": {"side": "right"}}),
            "join": "test.record",
        },
        ["start -> left", "start -> right", "left -> join", "right -> join"],
        actions=recording_actions(log),
    )
    result = await run(workflow, actions=recording_actions(log))
    assert log == ["join"]
    assert len(result.runs_of("join")) == 1
    assert result.outputs["join"]["input"] == [{"side": "left"}, {"side": "right"}]


async def test_join_over_several_ports_gets_each_port() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "orders": ("data.set", {"values": {"orders": [1, 2]}}),
            "users": ("data.set", {"values": {"users": ["ann"]}}),
            "join": ("data.merge", {"strategy": "merge", "inputs": ["orders", "users"]}),
            "show": ("data.set", {"values": {"ports": "{{ inputs }}"}}),
        },
        [
            "start -> users",
            "start -> orders",
            "orders -> join.orders",
            "users -> join.users",
            "join -> show",
        ],
    )
    result = await run(workflow)
    assert result.outputs["join"] == {"orders": [1, 2], "users": ["ann"]}
    assert result.order[-2:] == ["join", "show"]


async def test_diamond_fails_fast_and_nothing_after_the_failure_runs() -> None:
    log: list[str] = []
    actions = recording_actions(log)
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "left": "test.boom",
            "left_after": "test.record",
            "right": "test.record",
            "join": "test.record",
        },
        [
            "start -> left",
            "start -> right",
            "left -> left_after",
            "right -> join",
            "left_after -> join",
        ],
        actions=actions,
    )
    result = await run(workflow, actions=actions)
    assert result.status == "failed"
    assert result.order == ["start", "left"]
    assert log == []
    assert result.error is not None
    assert result.error.code == "action_error"
    assert result.error.node_key == "left"
    assert result.error.message == "ValueError: left exploded"
    assert result.runs_of("left")[0].status == "failed"


async def test_concurrent_branches_are_cancelled_when_one_fails() -> None:
    started: list[str] = []
    actions = prana.ActionRegistry()

    @actions.action("test.slow")
    async def slow(ctx: prana.NodeContext) -> Any:
        started.append(ctx.node_key)
        await anyio.sleep_forever()

    @actions.action("test.fail_soon")
    async def fail_soon(ctx: prana.NodeContext) -> Any:
        await anyio.lowlevel.checkpoint()
        raise prana.NodeError("card declined", code="declined", details={"card": "visa"})

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "slow": "test.slow",
            "fail": "test.fail_soon",
            "after": "core.noop",
        },
        ["start -> slow", "start -> fail", "slow -> after", "fail -> after"],
        actions=actions,
        settings={"concurrency": 2},
    )
    with anyio.fail_after(5):
        result = await run(workflow, actions=actions)
    assert started == ["slow"]
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.details, result.error.node_key) == (
        "declined",
        {"card": "visa"},
        "fail",
    )
    statuses = {run.node_key: run.status for run in result.node_runs}
    assert statuses == {"start": "completed", "slow": "cancelled", "fail": "failed"}


async def test_concurrency_runs_independent_branches_at_once() -> None:
    running = 0
    peak = 0
    actions = prana.ActionRegistry()

    @actions.action("test.work")
    async def work(ctx: prana.NodeContext) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        running -= 1
        return ctx.node_key

    nodes: dict[str, Any] = {"start": "manual.trigger", **{f"w{i}": "test.work" for i in range(6)}}
    workflow = make_workflow(
        nodes, [f"start -> w{i}" for i in range(6)], actions=actions, settings={"concurrency": 3}
    )
    result = await run(workflow, actions=actions)
    assert result.status == "completed"
    assert peak == 3
    assert sorted(result.order[1:]) == [f"w{i}" for i in range(6)]


async def test_counter_loop_with_exit_condition_runs_in_exact_order() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "check": ("logic.if", {"condition": "{{ vars.count < 3 }}"}),
            "increment": ("workflow.set_variables", {"values": {"count": "{{ vars.count + 1 }}"}}),
            "done": ("data.set", {"values": {"final": "{{ vars.count }}"}}),
        },
        ["start -> check", "check.true -> increment", "increment -> check", "check.false -> done"],
        variables={"count": 0},
    )
    result = await run(workflow)
    assert result.status == "completed"
    assert result.order == [
        "start",
        "check", "increment",
        "check", "increment",
        "check", "increment",
        "check", "done",
    ]  # fmt: skip
    assert [run.run_index for run in result.runs_of("check")] == [0, 1, 2, 3]
    assert result.output == {"final": 3}
    assert result.vars == {"count": 3}
    assert result.iteration_count == 3


async def test_loop_limit_exceeded_fails_with_its_error() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "again": ("logic.if", {"condition": True}),
            "body": "core.noop",
        },
        ["start -> again", "again.true -> body", "body -> again"],
        settings={"max_iterations": 5},
    )
    result = await run(workflow)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "loop_limit_exceeded"
    assert result.error.node_key == "again"
    assert "max_iterations (5)" in result.error.message
    assert len(result.runs_of("again")) == 6
    assert "body" in result.order
    assert result.iteration_count == 5  # the iteration past the limit never started


def for_each_workflow(batch_size: int = 1) -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "each": ("core.for_each", {"items": "{{ input.items }}", "batch_size": batch_size}),
            "body": (
                "data.set",
                {
                    "values": {
                        "item": "{{ input }}",
                        "index": "{{ nodes.each.context.index }}",
                        "loop_item": "{{ loop.item }}",
                    }
                },
            ),
            "after": (
                "data.set",
                {"values": {"results": "{{ input }}", "cursor": "{{ nodes.each.context }}"}},
            ),
        },
        ["start -> each", "each.loop -> body", "body -> each", "each.done -> after"],
    )


@pytest.mark.parametrize("count", [0, 1, 5])
async def test_for_each_runs_the_body_once_per_item(count: int) -> None:
    items = [f"item{i}" for i in range(count)]
    result = await run(for_each_workflow(), {"items": items})
    assert result.status == "completed"
    assert result.order == ["start", *(["each", "body"] * count), "each", "after"]
    assert [run.port for run in result.runs_of("each")] == ["loop"] * count + ["done"]
    expected = [
        {"item": item, "index": index, "loop_item": item} for index, item in enumerate(items)
    ]
    assert result.outputs["after"]["results"] == expected
    cursor = result.outputs["after"]["cursor"]
    assert cursor["done"] is True
    assert cursor["iteration"] == count
    assert cursor["items"] == items


async def test_for_each_in_batches_of_two_shows_the_cursor() -> None:
    result = await run(for_each_workflow(batch_size=2), {"items": [1, 2, 3, 4, 5]})
    assert result.status == "completed"
    assert result.order == [
        "start",
        "each",
        "body",
        "each",
        "body",
        "each",
        "body",
        "each",
        "after",
    ]
    assert result.outputs["after"]["results"] == [
        {"item": [1, 2], "index": 0, "loop_item": [1, 2]},
        {"item": [3, 4], "index": 2, "loop_item": [3, 4]},
        {"item": [5], "index": 4, "loop_item": [5]},
    ]


async def test_for_each_items_must_be_a_list() -> None:
    result = await run(for_each_workflow(), {"items": "abc"})
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.node_key) == ("invalid_params", "each")


async def test_nested_for_each_keeps_separate_cursors() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "rows": ("core.for_each", {"items": "{{ input.rows }}"}),
            "cells": ("core.for_each", {"items": "{{ input }}"}),
            "cell": (
                "data.set",
                {"values": {"row": "{{ nodes.rows.context.index }}", "cell": "{{ loop.item }}"}},
            ),
            "row_done": (
                "data.set",
                {"values": {"row": "{{ nodes.rows.context.index }}", "cells": "{{ input }}"}},
            ),
            "all_done": "core.noop",
        },
        [
            "start -> rows",
            "rows.loop -> cells",
            "cells.loop -> cell",
            "cell -> cells",
            "cells.done -> row_done",
            "row_done -> rows",
            "rows.done -> all_done",
        ],
    )
    result = await run(workflow, {"rows": [["a", "b"], [], ["c"]]})
    assert result.status == "completed"
    assert result.output == [
        {"row": 0, "cells": [{"row": 0, "cell": "a"}, {"row": 0, "cell": "b"}]},
        {"row": 1, "cells": []},
        {"row": 2, "cells": [{"row": 2, "cell": "c"}]},
    ]
    assert result.order == [
        "start",
        "rows", "cells", "cell", "cells", "cell", "cells", "row_done",
        "rows", "cells", "row_done",
        "rows", "cells", "cell", "cells", "row_done",
        "rows", "all_done",
    ]  # fmt: skip


async def test_edges_leaving_a_loop_wait_for_it_to_finish() -> None:
    # 'log' leaves the loop on every iteration; 'after' must run once, at the end,
    # with what was sent last.
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "check": ("logic.if", {"condition": "{{ vars.n < 2 }}"}),
            "inc": ("workflow.set_variables", {"values": {"n": "{{ vars.n + 1 }}"}}),
            "note": ("data.set", {"values": {"n": "{{ vars.n }}"}}),
            "after": "core.noop",
        },
        ["start -> check", "check.true -> inc", "inc -> note", "note -> check", "note -> after"],
        variables={"n": 0},
    )
    result = await run(workflow)
    assert result.order == [
        "start",
        "check",
        "inc",
        "note",
        "check",
        "inc",
        "note",
        "check",
        "after",
    ]
    assert result.output == {"n": 2}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("append", [[{"id": 1}], [{"id": 2}, {"id": 1, "x": 2}]]),
        ("concat", [{"id": 1}, {"id": 2}, {"id": 1, "x": 2}]),
        ("combine_by_key", [{"id": 1, "x": 2}, {"id": 2}]),
    ],
)
async def test_merge_strategies_combine_branch_outputs(strategy: str, expected: Any) -> None:
    params: dict[str, Any] = (
        {"strategy": strategy, "key": "id"}
        if strategy == "combine_by_key"
        else {"strategy": strategy}
    )
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "a": ("data.set", {"values": {"rows": [{"id": 1}]}}),
            "b": ("data.set", {"values": {"rows": [{"id": 2}, {"id": 1, "x": 2}]}}),
            "rows_a": ("data.set", {"values": "{{ input.rows }}"}),
            "rows_b": ("data.set", {"values": "{{ input.rows }}"}),
            "merge": ("data.merge", params),
        },
        [
            "start -> a",
            "start -> b",
            "a -> rows_a",
            "b -> rows_b",
            "rows_a -> merge",
            "rows_b -> merge",
        ],
    )
    result = await run(workflow)
    assert result.status == "completed", result.error
    assert result.outputs["merge"] == expected


async def test_merge_objects_lays_later_inputs_over_earlier_ones() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "a": ("data.set", {"values": {"x": 1, "y": 1}}),
            "b": ("data.set", {"values": {"y": 2}}),
            "merge": ("data.merge", {"strategy": "merge"}),
        },
        ["start -> a", "start -> b", "a -> merge", "b -> merge"],
    )
    result = await run(workflow)
    assert result.output == {"x": 1, "y": 2}


async def test_merge_objects_refuses_a_list_input() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "a": ("data.set", {"values": {"x": 1}}),
            "b": ("data.set", {"values": "{{ [1, 2] }}"}),
            "merge": ("data.merge", {"strategy": "merge"}),
        },
        ["start -> a", "start -> b", "a -> merge", "b -> merge"],
    )
    result = await run(workflow)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.node_key) == ("invalid_input", "merge")


async def test_combine_by_key_joins_records_from_both_inputs() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "users": (
                "data.set",
                {"values": {"rows": [{"id": 1, "name": "ann"}, {"id": 2, "name": "bo"}]}},
            ),
            "scores": (
                "data.set",
                {"values": {"rows": [{"id": 2, "score": 9}, {"id": 1, "score": 7}]}},
            ),
            "user_rows": ("data.set", {"values": "{{ input.rows }}"}),
            "score_rows": ("data.set", {"values": "{{ input.rows }}"}),
            "join": ("data.merge", {"strategy": "combine_by_key", "key": "id"}),
        },
        [
            "start -> users",
            "start -> scores",
            "users -> user_rows",
            "scores -> score_rows",
            "user_rows -> join",
            "score_rows -> join",
        ],
    )
    result = await run(workflow)
    assert result.output == [
        {"id": 1, "name": "ann", "score": 7},
        {"id": 2, "name": "bo", "score": 9},
    ]


async def test_merge_in_any_mode_runs_on_the_first_input() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "fast": ("data.set", {"values": {"from": "fast"}}),
            "slow1": "core.noop",
            "slow2": ("data.set", {"values": {"from": "slow"}}),
            "first": ("data.merge", {"mode": "any"}),
        },
        ["start -> fast", "start -> slow1", "slow1 -> slow2", "fast -> first", "slow2 -> first"],
    )
    result = await run(workflow)
    assert result.status == "completed"
    assert result.runs_of("first")[0].output == [{"from": "fast"}]
    assert result.order == ["start", "fast", "first", "slow1", "slow2"]


@pytest.mark.parametrize(("on_error", "port"), [("continue", "main"), ("error_port", "error")])
async def test_on_error_routes_the_error_as_data(on_error: str, port: str) -> None:
    log: list[str] = []
    actions = recording_actions(log)
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "boom": {"type": "test.boom", "settings": {"on_error": on_error}},
            "handle": (
                "data.set",
                {"values": {"caught": "{{ input.code }}", "message": "{{ input.message }}"}},
            ),
        },
        ["start -> boom", f"boom.{port} -> handle"],
        actions=actions,
    )
    result = await run(workflow, actions=actions)
    assert result.status == "completed"
    assert result.output == {"caught": "action_error", "message": "ValueError: boom exploded"}
    boom = result.runs_of("boom")[0]
    assert (boom.status, boom.port) == ("failed", port)


async def test_workflow_default_on_error_applies_to_nodes_without_their_own() -> None:
    log: list[str] = []
    actions = recording_actions(log)
    workflow = make_workflow(
        {"start": "manual.trigger", "boom": "test.boom", "after": "test.record"},
        ["start -> boom", "boom -> after"],
        actions=actions,
        settings={"on_error": "continue"},
    )
    result = await run(workflow, actions=actions)
    assert result.status == "completed"
    assert log == ["after"]


async def test_action_returning_unknown_port_fails_the_node() -> None:
    actions = prana.ActionRegistry()

    @actions.action("test.bad_port", outputs=("main", "other"))
    async def bad_port(ctx: prana.NodeContext) -> prana.Output:
        return prana.Output(1, port="nope")

    workflow = make_workflow(
        {"start": "manual.trigger", "x": "test.bad_port"}, ["start -> x"], actions=actions
    )
    result = await run(workflow, actions=actions)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "invalid_port"
    assert "'nope'" in result.error.message
    assert "main, other" in result.error.message


async def test_output_that_is_not_json_fails_the_node_clearly() -> None:
    actions = prana.ActionRegistry()

    @actions.action("test.set")
    async def returns_set(ctx: prana.NodeContext) -> Any:
        return {"tags": {"a", "b"}}

    workflow = make_workflow(
        {"start": "manual.trigger", "x": "test.set"}, ["start -> x"], actions=actions
    )
    result = await run(workflow, actions=actions)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "invalid_output"
    assert "not JSON" in result.error.message


@pytest.mark.parametrize("blob", [0, 100_000], ids=["small", "large"])
async def test_outputs_are_copied_so_one_node_cannot_change_anothers_data(blob: int) -> None:
    # A large input (past 64 KB as JSON) is copied sharing its strings, which
    # cannot change; its objects and lists are the action's own all the same.
    actions = prana.ActionRegistry()

    @actions.action("test.source")
    def source(ctx: prana.NodeContext) -> Any:
        return {"a": 1, "blob": "x" * blob, "rows": [{"n": 1}, [2]]}

    @actions.action("test.mutate")
    def mutate(ctx: prana.NodeContext) -> Any:
        data = ctx.input  # a careless action changes what it was given
        data["changed"] = True
        data["rows"][0]["n"] = 99
        data["rows"][1].append(3)
        return data

    workflow = make_workflow(
        {"start": "manual.trigger", "source": "test.source", "mutate": "test.mutate"},
        ["start -> source", "source -> mutate"],
        actions=actions,
    )
    result = await run(workflow, actions=actions)
    assert result.outputs["source"] == {"a": 1, "blob": "x" * blob, "rows": [{"n": 1}, [2]]}
    assert result.outputs["mutate"] == {
        "a": 1,
        "blob": "x" * blob,
        "rows": [{"n": 99}, [2, 3]],
        "changed": True,
    }


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_action_that_changes_the_triggers_data_changes_it_for_no_other_node(
    kind: str,
) -> None:
    actions = prana.ActionRegistry()

    def change(ctx: prana.NodeContext) -> Any:
        ctx.trigger["extra"] = True  # a careless action changes what it was given
        ctx.trigger["body"]["amount"] = 999
        ctx.trigger["data"]["body"]["lines"].append("extra")
        return {"changed": True}

    async def change_async(ctx: prana.NodeContext) -> Any:
        return change(ctx)

    actions.action("test.change")(change if kind == "sync" else change_async)

    @actions.action("test.look")
    def look(ctx: prana.NodeContext) -> Any:
        return {"body": ctx.trigger["body"], "extra": "extra" in ctx.trigger}

    workflow = make_workflow(
        {
            "start": "webhook.trigger",
            "change": "test.change",
            "look": "test.look",
            "read": ("data.set", {"values": {"amount": "{{ trigger.data.body.amount }}"}}),
        },
        ["start -> change", "change -> look", "look -> read"],
        actions=actions,
    )
    result = await run(workflow, {"body": {"amount": 5, "lines": ["a"]}}, actions=actions)
    assert result.status == "completed"
    assert result.outputs["look"] == {"body": {"amount": 5, "lines": ["a"]}, "extra": False}
    assert result.outputs["read"] == {"amount": 5}
    assert result.input["body"] == {"amount": 5, "lines": ["a"]}


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_what_an_action_changes_of_any_field_of_its_context_is_its_own(kind: str) -> None:
    # Each field is copied when the action first reads it, then kept: what it changed
    # is there when it reads the field again, and nowhere else.
    actions = prana.ActionRegistry()

    def change(ctx: prana.NodeContext) -> Any:
        ctx.input["rows"].append("input")
        ctx.inputs["main"]["rows"].append("inputs")
        ctx.deliveries["main"][0]["rows"].append("deliveries")
        ctx.vars["cfg"]["a"].append("vars")
        ctx.params["opts"]["k"].append("params")
        ctx.trigger["data"]["body"]["n"] = 99
        return {
            "input": ctx.input["rows"],
            "inputs": ctx.inputs["main"]["rows"],
            "deliveries": ctx.deliveries["main"][0]["rows"],
            "vars": ctx.vars["cfg"],
            "params": ctx.params["opts"],
            "trigger": ctx.trigger["data"]["body"],
        }

    async def change_async(ctx: prana.NodeContext) -> Any:
        await anyio.lowlevel.checkpoint()
        return change(ctx)

    actions.action("test.change")(change if kind == "sync" else change_async)

    @actions.action("test.source")
    def source(ctx: prana.NodeContext) -> Any:
        return {"rows": ["source"]}

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "vars": ("workflow.set_variables", {"values": {"cfg": {"a": [1]}}}),
            "source": "test.source",
            "change": ("test.change", {"opts": {"k": [1]}}),
            "look": (
                "data.set",
                {
                    "values": {
                        "source": "{{ nodes.source.output }}",
                        "vars": "{{ vars.cfg }}",
                        "trigger": "{{ trigger.data.body }}",
                    }
                },
            ),
        },
        ["start -> vars", "vars -> source", "source -> change", "change -> look"],
        actions=actions,
    )
    async with prana.Engine(actions=actions, env={}) as engine:
        for _ in range(2):  # the second run sees the workflow's parameters as written
            result = await engine.run(workflow, {"body": {"n": 1}})
            assert result.status == "completed", result.error
            assert result.outputs["change"] == {
                "input": ["source", "input"],
                "inputs": ["source", "inputs"],
                "deliveries": ["source", "deliveries"],
                "vars": {"a": [1, "vars"]},
                "params": {"k": [1, "params"]},
                "trigger": {"n": 99},
            }
            assert result.outputs["source"] == {"rows": ["source"]}
            assert result.outputs["look"] == {
                "source": {"rows": ["source"]},
                "vars": {"a": [1]},
                "trigger": {"n": 1},
            }
            assert result.input == {"body": {"n": 1}}


async def test_what_a_caller_is_shown_of_a_running_execution_is_its_own_copy() -> None:
    actions = prana.ActionRegistry()
    release = anyio.Event()

    @actions.action("test.source")
    def source(ctx: prana.NodeContext) -> Any:
        return {"amount": 5, "lines": ["a"]}

    @actions.action("test.hold")
    async def hold(ctx: prana.NodeContext) -> Any:
        await release.wait()
        return {}

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "source": "test.source",
            "hold": "test.hold",
            "read": (
                "data.set",
                {"values": {"seen": "{{ nodes.source.output }}", "x": "{{ trigger.data.x }}"}},
            ),
        },
        ["start -> source", "source -> hold", "hold -> read"],
        actions=actions,
    )
    async with prana.Engine(actions=actions, env={}) as engine:
        handle = await engine.start(workflow, {"x": 1})
        while "hold" not in [run.node_key for run in handle.snapshot().node_runs]:
            await anyio.lowlevel.checkpoint()
        for shown in (handle.snapshot(), await engine.get(handle.id)):
            (run,) = [run for run in shown.node_runs if run.node_key == "source"]
            run.output["amount"] = 999  # a caller changes what it was shown
            run.output["lines"].append("b")
            shown.input["x"] = 2
        release.set()
        result = await handle.result()
    assert result.status == "completed", result.error
    assert result.outputs["read"] == {"seen": {"amount": 5, "lines": ["a"]}, "x": 1}
    assert result.input == {"x": 1}


def source_then_wait() -> tuple[prana.ActionRegistry, prana.Workflow]:
    """A node outputs data, the next waits, the last reads the first's output."""
    actions = prana.ActionRegistry()

    @actions.action("test.source")
    def source(ctx: prana.NodeContext) -> Any:
        return {"amount": 5, "lines": ["a"]}

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "source": "test.source",
            "ask": "wait.webhook",
            "read": ("data.set", {"values": {"seen": "{{ nodes.source.output }}"}}),
        },
        ["start -> source", "source -> ask", "ask -> read"],
        actions=actions,
    )
    return actions, workflow


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "sqlite"])
async def test_what_run_returns_of_a_waiting_execution_is_the_callers(
    durable: bool, tmp_path: Path
) -> None:
    actions, workflow = source_then_wait()
    store = tmp_path / "p.db" if durable else None
    async with prana.Engine(actions=actions, env={}, store=store) as engine:
        waiting = await engine.run(workflow)
        (run,) = [run for run in waiting.node_runs if run.node_key == "source"]
        run.output["lines"].append("by the caller")
        result = await engine.resume(waiting.id, {"ok": True})
    assert result.outputs["read"] == {"seen": {"amount": 5, "lines": ["a"]}}


async def test_a_listener_that_changes_an_events_data_changes_nothing_the_execution_sees() -> None:
    actions, workflow = source_then_wait()

    def careless(event: Any) -> None:  # a middleware that changes what passes by
        if isinstance(event, prana.events.NodeCompleted) and event.node_key == "source":
            event.run.output["lines"].append("by middleware")

    async with prana.Engine(actions=actions, env={}, middleware=[careless]) as engine:
        handle = await engine.start(workflow)
        async for event in handle.events():
            if isinstance(event, prana.events.NodeCompleted) and event.node_key == "source":
                event.run.output["amount"] = 999  # a subscriber does the same
        result = await engine.resume(handle.id, {"ok": True})
    assert result.outputs["read"] == {"seen": {"amount": 5, "lines": ["a"]}}


async def test_sync_and_async_actions_get_the_full_context() -> None:
    seen: dict[str, Any] = {}
    actions = prana.ActionRegistry()

    @actions.action("test.inspect", outputs=("main",))
    def inspect_context(ctx: prana.NodeContext) -> prana.Output:
        seen.update(
            key=ctx.node_key,
            run_index=ctx.run_index,
            attempt=ctx.attempt,
            idempotency_key=ctx.idempotency_key,
            execution_id=ctx.execution_id,
            vars=dict(ctx.vars),
            params=dict(ctx.params),
        )
        return prana.Output({"ok": True}, vars={"seen": True}, node_context={"calls": 1})

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "look": ("test.inspect", {"greeting": "hi {{ input.name }}"}),
            "after": (
                "data.set",
                {"values": {"vars": "{{ vars }}", "ctx": "{{ nodes.look.context }}"}},
            ),
        },
        ["start -> look", "look -> after"],
        actions=actions,
        variables={"region": "eu"},
    )
    result = await run(workflow, {"name": "ann"}, actions=actions)
    assert seen["params"] == {"greeting": "hi ann"}
    assert seen["idempotency_key"] == f"{result.id}:look:0"
    assert (seen["run_index"], seen["attempt"], seen["vars"]) == (0, 1, {"region": "eu"})
    assert result.output == {"vars": {"region": "eu", "seen": True}, "ctx": {"calls": 1}}


async def test_expressions_see_every_name() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "first": ("data.set", {"values": {"value": 41}}),
            "each": ("core.for_each", {"items": [10, 20]}),
            "show": (
                "data.set",
                {
                    "values": {
                        "input": "{{ input }}",
                        "inputs": "{{ inputs.main }}",
                        "nodes": "{{ nodes.first.output.value + 1 }}",
                        "status": "{{ nodes.first.status }}",
                        "port": "{{ nodes.first.port }}",
                        "has_duration": "{{ nodes.first.duration_ms >= 0 }}",
                        "trigger": "{{ trigger.data.order }}",
                        "trigger_kind": "{{ trigger.kind }}",
                        "vars": "{{ vars.region }}",
                        "env": "{{ env.SHOP }}",
                        "execution": "{{ execution.id | length }}",
                        "workflow": "{{ execution.workflow }}",
                        "node": "{{ node }}",
                        "loop": "{{ loop.item }}",
                        "text": "order {{ trigger.data.order }} in {{ vars.region }}",
                    }
                },
            ),
        },
        ["start -> first", "first -> each", "each.loop -> show", "show -> each"],
        variables={"region": "eu"},
    )
    async with prana.Engine(env={"SHOP": "north"}) as engine:
        result = await engine.run(workflow, {"order": 7})
    assert result.status == "completed", result.error
    shows = [run.output for run in result.runs_of("show")]
    assert shows[1] == {
        "input": 20,
        "inputs": 20,
        "nodes": 42,
        "status": "completed",
        "port": "main",
        "has_duration": True,
        "trigger": 7,
        "trigger_kind": "manual",
        "vars": "eu",
        "env": "north",
        "execution": 32,
        "workflow": "test",
        "node": {},
        "loop": 20,
        "text": "order 7 in eu",
    }


async def test_template_failure_fails_the_node_naming_node_parameter_and_template() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "greet": ("data.set", {"values": {"name": "{{ input.user.name }}"}}),
        },
        ["start -> greet"],
    )
    result = await run(workflow, {"user": None})
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "expression_error"
    assert result.error.node_key == "greet"
    assert "'values.name'" in result.error.message
    assert "{{ input.user.name }}" in result.error.message
    assert result.runs_of("greet")[0].status == "failed"


async def test_sandbox_escape_attempt_fails_the_node() -> None:
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "evil": ("data.set", {"values": {"x": "{{ input.__class__.__mro__ }}"}}),
        },
        ["start -> evil"],
    )
    result = await run(workflow, {"a": 1})
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "expression_error"
    assert "sandbox" in result.error.message


async def test_several_triggers_need_a_chosen_one() -> None:
    workflow = make_workflow(
        {
            "web": "manual.trigger",
            "cli": "manual.trigger",
            "work": "core.noop",
            "web_only": "core.noop",
        },
        ["web -> work", "cli -> work", "web -> web_only"],
    )
    async with prana.Engine() as engine:
        with pytest.raises(prana.WorkflowValidationError, match="2 triggers"):
            await engine.run(workflow)
        result = await engine.run(workflow, {"x": 1}, trigger="cli")
    assert result.order == ["cli", "work"]
    assert result.trigger == "cli"
