"""``engine.rerun(id, from_node=...)``: a new execution of the same workflow version
that keeps the outputs of everything not downstream of the chosen node and runs from
there (after a fix to an action, say)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import prana
from prana.testing import open_engine
from tests.helpers import make_workflow


def shop(calls: list[str], fixed: dict[str, bool]) -> tuple[prana.ActionRegistry, prana.Workflow]:
    actions = prana.ActionRegistry()

    @actions.action("test.price")
    def price(ctx: prana.NodeContext) -> Any:
        calls.append("price")
        return {"total": ctx.input["n"] * 2}

    @actions.action("test.charge")
    def charge(ctx: prana.NodeContext) -> Any:
        calls.append("charge")
        if not fixed["charge"]:
            raise prana.NodeError("the card service is down", code="unavailable")
        return {"charged": ctx.input["total"]}

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "price": "test.price",
            "charge": "test.charge",
            "mail": ("data.set", {"values": {"mailed": "{{ input.charged }}"}}),
            "audit": ("data.set", {"values": {"n": "{{ trigger.data.n }}"}}),
        },
        ["start -> price", "price -> charge", "charge -> mail", "start -> audit"],
        actions=actions,
    )
    return actions, workflow


async def test_a_rerun_keeps_what_came_before_and_runs_from_the_chosen_node(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    fixed = {"charge": False}
    actions, workflow = shop(calls, fixed)
    path = tmp_path / "prana.db"
    async with open_engine(path=path, actions=actions) as engine:
        failed = await engine.run(workflow, {"n": 5})
        assert failed.status == "failed"
        assert failed.order == ["start", "price", "charge"]
        fixed["charge"] = True  # the fix
        calls.clear()
        again = await engine.rerun(failed.id, from_node="charge")
    assert calls == ["charge"]  # price kept its output; it did not run again
    assert again.id != failed.id
    assert again.status == "completed"
    assert (again.workflow_id, again.workflow_version) == (
        failed.workflow_id,
        failed.workflow_version,
    )
    assert again.outputs["price"] == failed.outputs["price"] == {"total": 10}
    assert again.outputs["charge"] == {"charged": 10}
    assert again.outputs["mail"] == {"mailed": 10}
    assert again.outputs["audit"] == {"n": 5}  # never ran in the original: it runs now
    async with open_engine(path=path, actions=actions) as engine:  # both on disk
        original = await engine.get(failed.id)
        stored = await engine.get(again.id)
    assert original.status == "failed"
    # charge and audit are both ready as the rerun starts: they take their turns as
    # nodes ready at once always do in the machine (charge first, then what it makes
    # ready, then audit), as they would have in the original.
    assert [(r.node_key, r.status) for r in stored.node_runs] == [
        ("start", "completed"),
        ("price", "completed"),
        ("charge", "completed"),
        ("mail", "completed"),
        ("audit", "completed"),
    ]


async def test_a_rerun_with_a_new_input_gives_it_to_what_runs_again() -> None:
    calls: list[str] = []
    actions, workflow = shop(calls, {"charge": True})
    async with prana.Engine(actions=actions, env={}) as engine:
        done = await engine.run(workflow, {"n": 5})
        again = await engine.rerun(done.id, from_node="price", input={"n": 7})
    assert calls == ["price", "charge", "price", "charge"]
    assert again.outputs["charge"] == {"charged": 14}
    assert again.outputs["audit"] == {"n": 5}  # kept: not downstream of 'price'


async def test_what_cannot_be_rerun_is_refused_clearly() -> None:
    calls: list[str] = []
    actions, workflow = shop(calls, {"charge": True})
    looping = make_workflow(
        {
            "start": "manual.trigger",
            "count": ("workflow.set_variables", {"values": {"i": "{{ vars.i + 1 }}"}}),
            "body": "core.noop",
            "more": ("logic.if", {"condition": "{{ vars.i < 3 }}"}),
        },
        ["start -> count", "count -> body", "body -> more", "more.true -> count"],
        variables={"i": 0},
    )
    async with prana.Engine(actions=actions, env={}) as engine:
        done = await engine.run(workflow, {"n": 1})
        with pytest.raises(prana.InvalidTransition, match="has no node 'chrage'"):
            await engine.rerun(done.id, from_node="chrage")
        with pytest.raises(prana.ExecutionNotFound):
            await engine.rerun("0" * 32, from_node="charge")
        loop = await engine.run(looping)
        with pytest.raises(prana.InvalidTransition, match="inside the loop entered at 'count'"):
            await engine.rerun(loop.id, from_node="body")
        again = await engine.rerun(loop.id, from_node="count")  # from the entry is fine
    assert again.status == "completed"
    assert again.vars == {"i": 4}  # the original's variables, as they stood


async def test_run_node_runs_one_node_with_given_upstream_outputs() -> None:
    calls: list[str] = []
    actions, workflow = shop(calls, {"charge": True})
    async with prana.Engine(actions=actions, env={}) as engine:
        charged = await engine.run_node(workflow, "charge", nodes={"price": {"total": 3}})
        mailed = await engine.run_node(workflow, "mail", nodes={"charge": {"charged": 9}})
        audited = await engine.run_node(workflow, "audit", input={"n": 4})
        assert await engine.list_executions() == []  # nothing saved
        with pytest.raises(ValueError, match="gets its input from price: give the output"):
            await engine.run_node(workflow, "charge")
        with pytest.raises(ValueError, match="has no node 'chrage'"):
            await engine.run_node(workflow, "chrage")
    assert calls == ["charge"]  # one node each time, nothing after it
    assert (charged.status, charged.output, charged.port) == ("completed", {"charged": 3}, "main")
    assert mailed.output == {"mailed": 9}
    assert mailed.params == {"values": {"mailed": 9}}
    assert audited.output == {"n": 4}


async def test_run_node_shows_how_an_action_fails() -> None:
    calls: list[str] = []
    actions, workflow = shop(calls, {"charge": False})
    async with prana.Engine(actions=actions, env={}) as engine:
        failed = await engine.run_node(workflow, "charge", nodes={"price": {"total": 3}})
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == ("unavailable", "the card service is down")


async def test_a_rerun_of_a_large_workflow_is_saved_and_carries_on_after_a_restart(
    tmp_path: Path,
) -> None:
    # 100 nodes: the routing state is saved in blocks. The rerun waits half way; a new
    # engine carries it on from disk.
    actions = prana.ActionRegistry()
    broken = {"on": True}

    @actions.action("test.step")
    def step(ctx: prana.NodeContext) -> Any:
        if ctx.node_key == "n60" and broken["on"]:
            raise prana.NodeError("broken", code="broken")
        return ctx.input + 1

    keys = [f"n{index}" for index in range(100)]
    workflow = make_workflow(
        {"start": "manual.trigger", **dict.fromkeys(keys, "test.step"), "hold": "wait.webhook"},
        [
            *(f"{a} -> {b}" for a, b in zip(["start", *keys[:79]], keys[:80], strict=True)),
            "n79 -> hold",
            *(f"{a} -> {b}" for a, b in zip(["hold", *keys[80:99]], keys[80:], strict=True)),
        ],
        actions=actions,
    )
    path = tmp_path / "prana.db"
    async with open_engine(path=path, actions=actions) as engine:
        failed = await engine.run(workflow, 0)
        assert failed.status == "failed"
        broken["on"] = False
        waiting = await engine.rerun(failed.id, from_node="n60")
        assert waiting.status == "suspended"
    async with open_engine(path=path, actions=actions) as engine:
        token = waiting.suspensions[0].token
        assert token is not None
        done = await engine.resume_token(token, 1000)
        whole = await engine.get(done.id)
    assert done.status == "completed"
    assert done.output == 1020
    assert [run.node_key for run in whole.node_runs] == ["start", *keys[:80], "hold", *keys[80:]]
    assert whole.runs_of("n59")[0].output == failed.runs_of("n59")[0].output == 60
