"""Many waiting executions: they leave memory, survive a restart, and all resume."""

from __future__ import annotations

from pathlib import Path

import anyio

from prana.testing import open_engine
from tests.helpers import make_workflow

COUNT = 1000


async def test_a_thousand_waiting_executions_resume_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "prana.db"
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "prepare": ("data.set", {"values": {"order": "{{ input.order }}"}}),
            "approval": "wait.webhook",
            "ship": (
                "data.set",
                {"values": {"shipped": "{{ trigger.data.order }}", "by": "{{ input.by }}"}},
            ),
        },
        ["start -> prepare", "prepare -> approval", "approval -> ship"],
    )
    async with open_engine(path=db) as engine:
        handles = [await engine.start(workflow, {"order": n}) for n in range(COUNT)]
        waiting = [await handle.result() for handle in handles]
        assert {execution.status for execution in waiting} == {"suspended"}
        assert engine.live_count == 0  # waiting executions hold no memory
    tokens = {execution.suspensions[0].token: execution.input["order"] for execution in waiting}
    assert len(tokens) == COUNT

    async with open_engine(path=db) as engine:
        listed = await engine.list_executions(status="suspended", limit=2 * COUNT)
        assert {execution.suspensions[0].token for execution in listed} == set(tokens)
        done = []

        async def resume(token: str) -> None:
            done.append(await engine.resume_token(token, {"by": "ops"}))

        async with anyio.create_task_group() as group:
            for token in tokens:
                group.start_soon(resume, token)
        assert len(done) == COUNT
        assert {execution.status for execution in done} == {"completed"}
        assert sorted(execution.output["shipped"] for execution in done) == list(range(COUNT))
        assert {execution.output["by"] for execution in done} == {"ops"}
        assert await engine.list_executions(status="suspended") == []
        assert engine.live_count == 0
