"""The daemon's tests run a real server (Hypercorn on a loopback port) in the test's
own event loop, on both backends, over a SQLite file in a temporary folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio

import prana
from prana.server import ServeConfig, serve
from tests.server.client import request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def held_action(output: Any) -> tuple[prana.ActionRegistry, anyio.Event]:
    """Actions with ``test.slow``, which returns ``output`` once the event is set."""
    actions = prana.ActionRegistry()
    released = anyio.Event()

    @actions.action("test.slow")
    async def slow(ctx: prana.NodeContext) -> Any:
        await released.wait()
        return output

    return actions, released


def example(name: str) -> prana.Workflow:
    return prana.load_workflow(EXAMPLES / name)


async def start_waiting(
    url: str, workflow: str = "approval", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start an execution of ``workflow`` (an approval of 4 000 by default) and
    return it once it waits."""
    path = f"/api/workflows/{workflow}/executions?wait=10"
    reply = await request(url, "POST", path, {"amount": 4000}, headers=headers)
    execution = reply.json()
    assert execution["status"] == "suspended"
    return dict(execution)


def serve_config(
    db: Path | str,
    workflows: Sequence[prana.Workflow],
    *,
    actions: prana.ActionRegistry | None = None,
    **options: Any,
) -> ServeConfig:
    """The configuration of a test's daemon: on a free loopback port, over ``db`` (a
    SQLite file, or a store URL)."""
    return ServeConfig(
        store=db if isinstance(db, str) else f"sqlite:///{db}",
        actions=actions or prana.ActionRegistry(),
        workflows=workflows,
        port=0,
        grace=1.0,
        **options,
    )


@asynccontextmanager
async def daemon(
    db: Path | str,
    workflows: Sequence[prana.Workflow] = (),
    *,
    tokens: Sequence[str] = (),
    max_body: int = 1 << 20,
    actions: prana.ActionRegistry | None = None,
    webhook_secrets: dict[str, str] | None = None,
    signing_key: str | None = None,
    tracer_provider: Any = None,
    clock: Any = None,
) -> AsyncIterator[str]:
    """A daemon serving ``workflows`` over the SQLite file ``db``; its URL."""
    config = serve_config(
        db,
        workflows,
        tokens=tokens,
        max_body=max_body,
        actions=actions,
        webhook_secrets=webhook_secrets or {},
        signing_key=signing_key,
        tracer_provider=tracer_provider,
        clock=clock,
    )
    started, stop = anyio.Event(), anyio.Event()
    urls: list[str] = []

    def ready(url: str) -> None:
        urls.append(url)
        started.set()

    async with anyio.create_task_group() as group:
        group.start_soon(partial(serve, config, ready=ready, stop=stop))
        await started.wait()
        try:
            yield urls[0]
        finally:
            stop.set()  # as SIGTERM would: the daemon stops by itself
