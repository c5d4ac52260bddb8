"""The in-memory store keeps what checkpoints say, run by run."""

from __future__ import annotations

import prana
from prana._records import Checkpoint
from prana.storage import MemoryStore, Store


def run(index: int, key: str, status: str = "completed") -> prana.NodeRun:
    return prana.NodeRun(node_key=key, run_index=0, execution_index=index, status=status)  # type: ignore[arg-type]


async def test_checkpoints_update_the_header_and_add_or_replace_runs() -> None:
    store = MemoryStore()
    assert isinstance(store, Store)
    base = {"execution_id": "e1", "workflow_id": "w", "workflow_version": 1, "trigger": "start"}
    await store.commit(
        [
            Checkpoint(
                **base,
                status="running",
                started_at=1.0,
                runs=(run(0, "start"), run(1, "a", "running")),
            )
        ]
    )
    await store.commit(
        [
            Checkpoint(
                **base,
                status="completed",
                started_at=1.0,
                finished_at=2.0,
                runs=(run(1, "a"), run(2, "b")),
                execution_data={"context_data": {"workflow": {"x": 1}}, "skipped": ["c"]},
            ),
            Checkpoint(**{**base, "execution_id": "e2"}, status="failed", started_at=3.0),
        ]
    )
    execution = await store.get_execution("e1")
    assert execution is not None
    assert execution.status == "completed"
    assert [(r.node_key, r.status) for r in execution.node_runs] == [
        ("start", "completed"),
        ("a", "completed"),
        ("b", "completed"),
    ]
    assert execution.vars == {"x": 1}
    assert execution.skipped == ("c",)
    assert await store.get_execution("nope") is None
    assert [e.id for e in await store.list_executions()] == ["e2", "e1"]
    assert [e.id for e in await store.list_executions(status="completed")] == ["e1"]
    assert await store.list_executions(workflow_id="other") == []
    assert len(await store.list_executions(limit=1)) == 1
