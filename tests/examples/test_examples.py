"""The examples run and give the results their comments promise, on both backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio

import prana
import prana.testing
from tests.helpers import run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_order_routing_prices_and_flags_big_orders() -> None:
    workflow = prana.load_workflow(EXAMPLES / "order_routing.yaml")
    big = await run(workflow, {"amount": 1200, "country": "DE"})
    assert big.output == {
        "country": "DE",
        "region": "eu",
        "net": 1200,
        "tax": 228.0,
        "total": 1428.0,
        "review": True,
    }
    small = await run(workflow, {"amount": 100, "country": "US"})
    assert small.output == {"country": "US", "region": "us", "net": 100, "tax": 7.0, "total": 107.0}
    assert "flag_review" not in small.order
    for order in ({"amount": "lots"}, {"country": "DE"}):  # no amount: its own guard too
        invalid = await run(workflow, order)
        assert invalid.status == "failed"
        assert invalid.error is not None
        assert invalid.error.code == "invalid_order"


async def test_batch_invoices_bills_in_batches_of_three() -> None:
    workflow = prana.load_workflow(EXAMPLES / "batch_invoices.yaml")
    result = await run(workflow, json.loads((EXAMPLES / "data" / "invoices.json").read_text()))
    assert result.status == "completed"
    assert result.output["batches"] == 3
    assert result.output["total"] == 1004
    assert [batch["customers"] for batch in result.output["per_batch"]] == [
        ["acme", "globex", "initech"],
        ["umbrella", "hooli", "stark"],
        ["wayne"],
    ]


async def test_pay_invoices_pays_each_invoice_in_a_child_in_invoice_order() -> None:
    approval = prana.load_workflow(EXAMPLES / "approval.yaml")
    workflow = prana.load_workflow(EXAMPLES / "pay_invoices.yaml")
    invoices = json.loads((EXAMPLES / "data" / "invoices.json").read_text())
    async with prana.Engine(workflows=[approval], env={}) as engine:
        result = await engine.run(workflow, invoices)
        children = await engine.list_executions(workflow="approval")
    assert result.status == "completed"
    assert [payment["paid"] for payment in result.output["payments"]] == [
        invoice["amount"] for invoice in invoices["invoices"]
    ]
    assert result.output["total"] == 1004
    assert len(children) == 7


async def test_paginate_stops_at_the_last_page_or_the_limit() -> None:
    workflow = prana.load_workflow(EXAMPLES / "paginate.yaml")
    pages = json.loads((EXAMPLES / "data" / "pages.json").read_text())
    result = await run(workflow, pages)
    assert result.output == {"pages_read": 3, "items": ["a", "b", "c", "d", "e", "f"], "count": 6}
    limited = await run(workflow, {**pages, "max_pages": 1})
    assert limited.output["items"] == ["a", "b", "c"]
    assert limited.order == ["start", "more", "fetch", "keep", "more", "report"]


def test_embedding_app_runs_on_both_backends() -> None:
    for extra in ([], ["--trio"], ["--amount", "900"]):
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "app.py"), *extra],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        expected = (
            "order -> charge -> apologise" if "900" in extra else "order -> charge -> confirm"
        )
        assert expected in done.stdout


async def test_order_intake_takes_orders_from_each_of_its_triggers() -> None:
    workflow = prana.load_workflow(EXAMPLES / "order_intake.yaml")
    clock = prana.testing.VirtualClock(start=1_900_000_000.0)  # 2030-03-17T17:46:40Z
    async with prana.Engine(env={}, clock=clock, workflows=[workflow]) as engine:
        events = engine.events()
        web = await engine.start_webhook(
            "orders", headers={"X-Shop": "berlin"}, body={"amount": 40}
        )
        called = await engine.run(workflow, {"amount": 15}, trigger="call")
        (published,) = await engine.publish("order.placed", {"amount": 7, "shop": "app"})
        placed = await engine.wait(published)
        hooked = await web.result()
        clock.set(1_900_054_800.0)  # 2030-03-18T09:00Z: past 02:00 in Berlin
        with anyio.fail_after(10):
            async for event in events:
                if isinstance(
                    event, prana.events.ExecutionCompleted
                ) and event.execution_id not in (
                    hooked.id,
                    called.id,
                    placed.id,
                ):
                    swept = await engine.get(event.execution_id)
                    break
    assert hooked.output == {"accepted": 40, "shop": "berlin", "via": "webhook"}
    assert called.output == {"accepted": 15, "shop": "direct", "via": "function"}
    assert placed.output == {"accepted": 7, "shop": "app", "via": "event"}
    assert swept.order == ["nightly", "sweep", "accept"]
    assert swept.output == {
        "accepted": 0,
        "shop": "sweep at 2030-03-18T01:00:00+00:00",
        "via": "schedule",
    }


def test_order_intake_runs_each_trigger_from_the_command_line(tmp_path: Path) -> None:
    def run_cli(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "prana", "run", str(EXAMPLES / "order_intake.yaml"),
             "--db", str(tmp_path / "p.db"), "--quiet", "--json", *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    web = run_cli(
        "--trigger", "web", "--input", '{"body": {"amount": 40}, "headers": {"X-Shop": "b"}}'
    )
    call = run_cli("--trigger", "call", "--input", '{"amount": 15}')
    sweep = run_cli("--trigger", "nightly")
    assert web["output"] == {"accepted": 40, "shop": "b", "via": "webhook"}
    assert call["output"] == {"accepted": 15, "shop": "direct", "via": "function"}
    assert sweep["output"]["shop"].startswith("sweep at ")
