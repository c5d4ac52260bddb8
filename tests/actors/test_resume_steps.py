"""An action's resume step (``on_resume``): what a waiting node does with the data it
is resumed with: check it, transform it, fail, refuse it (the node still waits) or
wait again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import prana
from prana.testing import open_engine
from tests.helpers import make_workflow


def checked_approval(actions: prana.ActionRegistry) -> prana.Workflow:
    def on_resume(resume: prana.Resume) -> Any:
        assert resume.params == {"limit": 100}  # what the run was given, as recorded
        answer = resume.data
        if not isinstance(answer, dict) or "approved" not in answer:
            raise prana.ResumeRefused(
                f"an answer to {resume.suspension.data['prompt']!r} needs 'approved': "
                "send {'approved': true|false, 'by': name}"
            )
        if answer.get("by") == "mallory":
            raise prana.NodeError("mallory may not approve", code="not_allowed")
        if answer.get("ask_again"):
            return prana.Suspend(kind="approval", token=True, data={"prompt": "really?"})
        port = "yes" if answer["approved"] else "no"
        return prana.Output({"by": answer.get("by"), "attempt": resume.attempt}, port=port)

    @actions.action("test.approve", outputs=("yes", "no"), on_resume=on_resume)
    def approve(ctx: prana.NodeContext) -> prana.Suspend:
        return prana.Suspend(kind="approval", token=True, data={"prompt": f"pay {ctx.input}?"})

    return make_workflow(
        {
            "start": "manual.trigger",
            "approve": {
                "type": "test.approve",
                "params": {"limit": "{{ 50 * 2 }}"},
                "settings": {"on_error": "error_port"},
            },
            "pay": "core.noop",
            "drop": "core.noop",
            "refused": "core.noop",
        },
        [
            "start -> approve",
            "approve.yes -> pay",
            "approve.no -> drop",
            "approve.error -> refused",
        ],
        actions=actions,
    )


async def test_the_resume_step_routes_the_answer(tmp_path: Path) -> None:
    actions = prana.ActionRegistry()
    workflow = checked_approval(actions)
    async with open_engine(path=tmp_path / "p.db", actions=actions) as engine:
        waiting = await engine.run(workflow, 120)
        done = await engine.resume(waiting.id, {"approved": False, "by": "ann"})
    assert done.status == "completed"
    assert done.order == ["start", "approve", "drop"]
    assert done.outputs["approve"] == {"by": "ann", "attempt": 1}


async def test_data_the_step_refuses_changes_nothing_and_the_node_still_waits(
    tmp_path: Path,
) -> None:
    actions = prana.ActionRegistry()
    workflow = checked_approval(actions)
    path = tmp_path / "p.db"
    async with open_engine(path=path, actions=actions) as engine:
        waiting = await engine.run(workflow, 120)
        token = waiting.suspensions[0].token
        assert token is not None
        with pytest.raises(prana.ResumeRefused, match="an answer to 'pay 120\\?' needs 'approved'"):
            await engine.resume_token(token, {"yes": True})
        still = await engine.get(waiting.id)
        assert still.status == "suspended"
        assert [s.token for s in still.suspensions] == [token]
    async with open_engine(path=path, actions=actions) as engine:  # as saved
        done = await engine.resume_token(token, {"approved": True, "by": "bob"})
    assert done.order == ["start", "approve", "pay"]


async def test_the_step_may_fail_the_node_or_wait_again() -> None:
    actions = prana.ActionRegistry()
    workflow = checked_approval(actions)
    async with prana.Engine(actions=actions, env={}) as engine:
        waiting = await engine.run(workflow, 5)
        failed = await engine.resume(waiting.id, {"approved": True, "by": "mallory"})
        assert failed.order == ["start", "approve", "refused"]
        assert failed.outputs["refused"]["code"] == "not_allowed"

        waiting = await engine.run(workflow, 6)
        again = await engine.resume(waiting.id, {"approved": True, "ask_again": True})
        assert again.status == "suspended"
        (wait,) = again.suspensions
        assert wait.data == {"prompt": "really?"}
        assert wait.token not in (None, waiting.suspensions[0].token)
        done = await engine.resume_token(wait.token or "", {"approved": True, "by": "eve"})
    assert done.order == ["start", "approve", "pay"]


def test_a_resume_step_must_be_a_plain_function() -> None:
    actions = prana.ActionRegistry()

    async def later(resume: prana.Resume) -> Any:
        return resume.data

    with pytest.raises(ValueError, match=r"on_resume of 'test\.wait' must be a plain function"):
        actions.action("test.wait", on_resume=later)(lambda ctx: prana.Suspend(kind="x"))


async def test_a_step_that_changes_what_it_is_given_changes_nothing_kept() -> None:
    # A careless step changes the wait's data, its parameters and the variables, then
    # refuses the answer: the node waits as it did.
    actions = prana.ActionRegistry()

    def on_resume(resume: prana.Resume) -> Any:
        resume.suspension.data["prompt"] = "changed"
        resume.params["limit"].append(0)
        resume.vars["region"]["name"] = "changed"
        if resume.data != "ok":
            raise prana.ResumeRefused("say ok")
        return {"saw": resume.suspension.data["prompt"]}

    @actions.action("test.ask", on_resume=on_resume)
    def ask(ctx: prana.NodeContext) -> prana.Suspend:
        return prana.Suspend(kind="question", token=True, data={"prompt": "ok?"})

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "ask": ("test.ask", {"limit": [1]}),
            "after": ("data.set", {"values": {"region": "{{ vars.region.name }}"}}),
        },
        ["start -> ask", "ask -> after"],
        actions=actions,
        variables={"region": {"name": "eu"}},
    )
    async with prana.Engine(actions=actions, env={}) as engine:
        waiting = await engine.run(workflow)
        (wait,) = waiting.suspensions
        with pytest.raises(prana.ResumeRefused, match="say ok"):
            await engine.resume_token(wait.token or "", "no")
        still = await engine.get(waiting.id)
        done = await engine.resume_token(wait.token or "", "ok")
    assert still.suspensions[0].data == {"prompt": "ok?"}
    assert still.suspensions[0].params == {"limit": [1]}
    assert done.status == "completed"
    assert done.outputs["ask"] == {"saw": "changed"}  # its own copy, changed by itself
    assert done.outputs["after"] == {"region": "eu"}
