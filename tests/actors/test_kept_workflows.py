"""Workflows kept in the store (``Engine.keep_serving``, the daemon's ``POST
/api/workflows``) are served by every engine on the store, within a heartbeat, and
no longer once one engine stops serving them (``DELETE /api/workflows/ID``)."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel

import prana
from prana.testing import open_engine

HOOKED = {
    "id": "hooked",
    "version": 1,
    "nodes": [
        {"key": "start", "type": "webhook.trigger", "params": {"path": "orders"}},
        {"key": "done", "type": "data.set", "params": {"values": {"got": "{{ trigger.body }}"}}},
    ],
    "connections": [{"from": "start", "to": "done"}],
}


async def until(condition: object) -> None:
    """Wait (at most 10 s) for ``condition()``, which the other engine's heartbeat
    makes true (no event tells when)."""
    with anyio.fail_after(10):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_another_engine_serves_what_one_keeps_and_stops_with_it(tmp_path: Path) -> None:
    path = tmp_path / "prana.db"
    async with (
        open_engine(path=path, clock=prana.actors.SystemClock()) as keeper,
        open_engine(path=path, clock=prana.actors.SystemClock(), heartbeat=0.05) as other,
    ):
        assert other.served() == []
        await keeper.keep_serving(HOOKED)
        await until(lambda: [w.id for w in other.served()] == ["hooked"])
        handle = await other.start_webhook("orders", body={"n": 1})
        done = await handle.result()
        changed = {**HOOKED, "version": 2}
        await keeper.keep_serving(changed)
        await until(lambda: [w.version for w in other.served()] == [2])
        await keeper.stop_serving("hooked")
        await until(lambda: other.served() == [])
        refused = None
        try:
            await other.start_webhook("orders", body={})
        except prana.TriggerError as exc:
            refused = exc
    assert done.output == {"got": {"n": 1}}
    assert refused is not None
    assert "no served workflow answers POST /orders" in str(refused)
