"""A small shop that embeds prana: its own actions, a checkout workflow, and a run.

    python examples/app.py                 # on asyncio
    python examples/app.py --trio          # the same on trio
    python examples/app.py --amount 900    # a charge the fake card processor declines

The workflow lives in ``checkout.yaml`` next to this file. ``shop.charge`` talks to a
(pretend) payment provider and uses the run's idempotency key, so a retried or
re-run node never charges twice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio
import attrs

import prana

actions = prana.ActionRegistry()


class FakePaymentProvider:
    """Stands in for a real API: declines amounts over the card limit, remembers keys."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.charges: dict[str, dict[str, Any]] = {}

    async def charge(self, key: str, customer: str, amount: float) -> dict[str, Any]:
        await anyio.sleep(0.01)  # the network
        if key in self.charges:  # idempotent: same key, same charge
            return self.charges[key]
        outcome = {
            "customer": customer,
            "amount": amount,
            "approved": amount <= self.limit,
            "charge_id": f"ch_{len(self.charges) + 1}",
        }
        self.charges[key] = outcome
        return outcome


provider = FakePaymentProvider(limit=500)
outbox: list[str] = []


@attrs.frozen(kw_only=True)
class ChargeParams:
    """Parameters of shop.charge."""

    customer: str
    amount: float


@actions.action("shop.charge", outputs=("main", "declined"), params=ChargeParams)
async def charge(ctx: prana.NodeContext) -> prana.Output:
    """Charge the customer's card; declined charges go out on 'declined'."""
    params: ChargeParams = ctx.params
    outcome = await provider.charge(ctx.idempotency_key, params.customer, params.amount)
    return prana.Output(outcome, port="main" if outcome["approved"] else "declined")


@actions.action("shop.email")
async def email(ctx: prana.NodeContext) -> dict[str, Any]:
    """Send an email (to the outbox)."""
    message = f"to {ctx.params['to']}: {ctx.params['subject']}"
    outbox.append(message)
    return {"sent": message}


async def main(amount: float) -> prana.Execution:
    workflow = prana.load_workflow(Path(__file__).with_name("checkout.yaml"), actions=actions)
    async with prana.Engine(actions=actions) as engine:
        return await engine.run(workflow, {"customer": "ann@example.com", "amount": amount})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--amount", type=float, default=120.0)
    parser.add_argument("--trio", action="store_true")
    options = parser.parse_args()
    result = anyio.run(main, options.amount, backend="trio" if options.trio else "asyncio")
    print(f"{result.status}: {' -> '.join(result.order)}")
    print(f"output: {result.output}")
    print(f"outbox: {outbox}")
    sys.exit(0 if result.status == "completed" else 1)
