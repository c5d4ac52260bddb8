"""prana.tune_gc changes the collector only when asked, in the process that asks."""

from __future__ import annotations

import subprocess
import sys


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by a new interpreter (a collector of its own)."""
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )


def test_tune_gc_raises_thresholds_and_freezes() -> None:
    script = (
        "import gc, prana; before = gc.get_threshold(); prana.tune_gc(); "
        "print(before, gc.get_threshold(), gc.get_freeze_count() > 0)"
    )
    done = run_python(script)
    assert done.stdout.strip() == "(700, 10, 10) (50000, 20, 100) True"


def test_importing_and_using_prana_leaves_the_collector_alone() -> None:
    script = (
        "import gc, anyio, prana\n"
        "async def main():\n"
        "    async with prana.Engine() as engine:\n"
        "        await engine.run({'id': 'x', 'nodes': [{'key': 's', 'type': 'manual.trigger'}]})\n"
        "anyio.run(main)\n"
        "print(gc.get_threshold(), gc.get_freeze_count())\n"
    )
    done = run_python(script)
    assert done.stdout.strip() == "(700, 10, 10) 0"


def test_executions_that_end_leave_nothing_for_the_collector_to_find() -> None:
    # Every object an execution made is freed as soon as it is not needed: none is
    # kept alive by a reference cycle until a full collection (which, with a thousand
    # executions in memory, holds the app's loop for tens of milliseconds).
    script = (
        "import gc, anyio, prana\n"
        "chain = {'id': 'x', 'nodes': [{'key': 's', 'type': 'manual.trigger'},\n"
        "    {'key': 'w', 'type': 'wait.webhook'}, {'key': 'n', 'type': 'core.noop'}],\n"
        "    'connections': [{'from': 's', 'to': 'w'}, {'from': 'w', 'to': 'n'}]}\n"
        "async def main():\n"
        "    async with prana.Engine() as engine:\n"
        "        await engine.run(chain)\n"
        "        gc.collect(); gc.disable()\n"
        "        waiting = [await engine.run(chain, i) for i in range(50)]\n"
        "        for execution in waiting:\n"
        "            await engine.resume(execution.id, 'ok')\n"
        "        print(gc.collect())\n"
        "anyio.run(main)\n"
    )
    done = run_python(script)
    assert done.stdout.strip() == "0"
