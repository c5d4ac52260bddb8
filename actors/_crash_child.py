"""The child process of :func:`prana.testing.kill_at` (``python -m prana.actors._crash_child``).

It reads a JSON spec on stdin, starts the workflow on the given SQLite file, prints
the execution id, and kills itself with SIGKILL when the chosen node event is
published, as a crash would. If the execution stops first, it exits normally.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import anyio

from prana._events import (
    Event,
    ExecutionCompleted,
    ExecutionFailed,
    NodeCompleted,
    NodeFailed,
    NodeRetrying,
    NodeStarted,
)

from ._cli_options import load_actions
from ._engine import Engine


async def _main(spec: dict[str, Any]) -> None:
    wanted: Any = {
        "started": NodeStarted,
        "completed": (NodeCompleted, NodeFailed),
        "retrying": NodeRetrying,
        "ended": (NodeCompleted, NodeFailed),
    }[spec["when"]]
    ran_node: set[str] = set()  # executions that ran the node (for "ended")

    def crash(event: Event) -> None:
        if spec["when"] == "ended":
            if isinstance(event, (ExecutionCompleted, ExecutionFailed)) and (
                event.execution_id in ran_node
            ):
                os.kill(os.getpid(), signal.SIGKILL)
            if isinstance(event, wanted) and event.node_key == spec["node"]:
                ran_node.add(event.execution_id)
            return
        if isinstance(event, wanted) and getattr(event, "node_key", None) == spec["node"]:
            run_index = event.run_index if isinstance(event, NodeStarted) else event.run.run_index
            if run_index == spec["run_index"]:
                os.kill(os.getpid(), signal.SIGKILL)

    actions = load_actions(spec.get("actions"))
    async with Engine(
        actions=actions,
        store=f"sqlite:///{spec['db']}",
        middleware=[crash],
        recover=False,
        workflows=spec.get("workflows", ()),
    ) as engine:
        handle = await engine.start(spec["workflow"], spec.get("input"))
        print(handle.id, flush=True)
        await engine.follow(await handle.result())  # through sync children


if __name__ == "__main__":
    anyio.run(_main, json.loads(sys.stdin.read()))
