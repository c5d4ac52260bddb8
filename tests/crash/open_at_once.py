"""One of many processes opening one SQLite file at once:
``python -m tests.crash.open_at_once DB GO``: waits until the file GO exists, then
opens an engine on DB, runs a one-node workflow and prints its status."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio

import prana


async def main(db: str) -> None:
    workflow = prana.load_workflow(
        {"id": "hello", "nodes": [{"key": "start", "type": "manual.trigger"}]}
    )
    async with prana.Engine(store=f"sqlite:///{db}", env={}) as engine:
        print((await engine.run(workflow, "hi")).status, flush=True)


if __name__ == "__main__":
    go = Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.001)
    anyio.run(main, sys.argv[1])
