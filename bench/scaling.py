"""How prana's cost grows with the work (issue 17), one role per process so that
memory and bytes written are its own:

    python bench/scaling.py chain N          -> durable chain of N nodes: us per node, bytes written per node
    python bench/scaling.py compile N        -> load + compile an N-node chain and an N-branch fan-out
    python bench/scaling.py loading N        -> the app's ticker while an N-node definition is checked
    python bench/scaling.py w4 N [KIND]      -> N concurrent 10-node chains, durable: nodes/s, peak RSS;
                                                KIND: sync (core.noop, the default), async (an async def
                                                action of the app's), def (a plain def action of the app's)
    python bench/scaling.py loop N           -> a 2-node loop run N times, durable: RSS at the end
    python bench/scaling.py wake N           -> a wait's wake with N runs behind it: ms from the timer to the next wait
    python bench/scaling.py for-each N       -> core.for_each over N items: us per iteration, bytes per iteration
    python bench/scaling.py timers-make DB N -> N executions waiting with a timeout, on DB
    python bench/scaling.py timers-start DB  -> start an engine on DB: seconds, RSS, longest loop stall
    python bench/scaling.py ticker-w4        -> a 1 ms ticker's lateness while W4 runs
    python bench/scaling.py ticker-resume    -> the same while 1000 waiting executions are resumed
    python bench/scaling.py outputs SIZE     -> a 10-node chain passing SIZE-byte outputs: longest stall
    python bench/scaling.py disk SIZE        -> bytes on disk per execution of 10 nodes with SIZE-byte outputs

Each prints one line of JSON. ``bench/run.py --only scaling`` runs them all and
prints each figure next to its goal.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import ACTIONS, chain_workflow

import prana


def written() -> int:
    """Bytes this process has passed to write(2) so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def rss_mb() -> float:
    """The resident memory now, in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def database() -> Any:
    with tempfile.TemporaryDirectory(prefix="prana-bench-") as folder:
        yield Path(folder) / "bench.db"


class Collections:
    """The time CPython's garbage collector takes (seconds): in all, and its longest
    pass, which holds the event loop like any other stall."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.longest = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            took = time.perf_counter() - self._began
            self.spent += took
            self.longest = max(self.longest, took)


@contextlib.contextmanager
def collections_timed() -> Iterator[Collections]:
    """The collector's time while inside."""
    collections = Collections()
    gc.callbacks.append(collections)
    try:
        yield collections
    finally:
        gc.callbacks.remove(collections)


class Ticker:
    """A task of the app that wants to run every millisecond: how late it runs."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.collections = Collections()

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await anyio.sleep(0.001)
            self.lateness.append((time.perf_counter() - before - 0.001) * 1000)

    def figures(self) -> dict[str, float]:
        late = sorted(self.lateness) or [0.0]
        return {
            "p50_ms": statistics.median(late),
            "p99_ms": late[min(len(late) - 1, int(len(late) * 0.99))],
            "max_ms": late[-1],
            # A full collection of the process's objects is a stall of its own:
            # how much of the largest lateness it can explain.
            "gc_max_ms": self.collections.longest * 1000,
        }


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[Ticker]:
    ticker = Ticker()
    with collections_timed() as ticker.collections:
        async with anyio.create_task_group() as app:
            app.start_soon(ticker.run)
            try:
                yield ticker
            finally:
                app.cancel_scope.cancel()


# Where a ticker measures the loop, the app starts its thousand tasks this many at a
# time, letting other tasks run between: a thousand starts in one go hold the loop for
# 20-30 ms here, the app's own stall and not the engine's.
PACE = 50


async def run_all(
    engine: prana.Engine, workflow: prana.Workflow, count: int, *, paced: bool = False
) -> list[Any]:
    results: list[Any] = []

    async def one(n: int) -> None:
        results.append(await engine.run(workflow, {"n": n}))

    async with anyio.create_task_group() as group:
        for n in range(count):
            group.start_soon(one, n)
            if paced and n % PACE == PACE - 1:
                await anyio.lowlevel.checkpoint()
    return results


# --------------------------------------------------------------------------- roles


async def chain(size: str) -> dict[str, float]:
    length = int(size)
    # A checkpoint per node, whose cost is what must not grow with the workflow:
    # core.noop is pure, and saved with the next (decision 0069).
    workflow = chain_workflow(length - 1, "bench.pass")
    times = max(1, 5000 // length)  # a short chain, run again and again, one at a time
    with database() as db:
        async with prana.Engine(store=f"sqlite:///{db}", actions=ACTIONS, env={}) as engine:
            await engine.run(chain_workflow(9, "bench.pass"))  # warm up
            engine.compile(workflow)  # compiling has a row of its own
            before, started = written(), time.perf_counter()
            for _ in range(times):
                result = await engine.run(workflow)
                assert result.status == "completed"
            elapsed, wrote = time.perf_counter() - started, written() - before
    nodes = length * times
    return {"us_per_node": elapsed / nodes * 1e6, "bytes_per_node": wrote / nodes}


def fan_out(width: int) -> dict[str, Any]:
    nodes = [{"key": "start", "type": "manual.trigger"}, {"key": "join", "type": "data.merge"}]
    nodes += [{"key": f"b{i}", "type": "core.noop"} for i in range(width)]
    connections = [{"from": "start", "to": f"b{i}"} for i in range(width)]
    connections += [{"from": f"b{i}", "to": "join"} for i in range(width)]
    return {"id": "fan", "nodes": nodes, "connections": connections}


def chain_document(length: int) -> dict[str, Any]:
    nodes = [{"key": "start", "type": "manual.trigger"}]
    nodes += [{"key": f"n{i}", "type": "core.noop"} for i in range(length)]
    keys = [node["key"] for node in nodes]
    return {
        "id": "chain",
        "nodes": nodes,
        "connections": [{"from": a, "to": b} for a, b in itertools.pairwise(keys)],
    }


async def compile_(size: str) -> dict[str, float]:
    figures = {}
    for name, document in (("chain", chain_document(int(size))), ("fan", fan_out(int(size)))):
        times = []
        for _ in range(3):
            actions = prana.ActionRegistry()
            started = time.perf_counter()
            workflow = prana.load_workflow(document, actions=actions)
            prana.lowlevel.compile_workflow(workflow, actions)
            times.append(time.perf_counter() - started)
        figures[f"{name}_s"] = statistics.median(times)
    return figures


def async_actions() -> prana.ActionRegistry:
    actions = prana.ActionRegistry()

    @actions.action("bench.step")
    async def step(ctx: prana.NodeContext) -> Any:
        return ctx.input

    @actions.action("bench.plain_step")
    def plain_step(ctx: prana.NodeContext) -> Any:
        return ctx.input  # registered as an app would: copies made, output checked

    return actions


def async_chain(
    actions: prana.ActionRegistry, length: int, node: str = "bench.step"
) -> prana.Workflow:
    nodes = [{"key": "start", "type": "manual.trigger"}]
    nodes += [{"key": f"n{i}", "type": node} for i in range(length)]
    keys = [node["key"] for node in nodes]
    return prana.load_workflow(
        {
            "id": "async_chain",
            "nodes": nodes,
            "connections": [{"from": a, "to": b} for a, b in itertools.pairwise(keys)],
        },
        actions=actions,
    )


async def w4(count: str, kind: str = "sync") -> dict[str, float]:
    actions = async_actions()
    workflow = {
        "sync": lambda: chain_workflow(9),
        "async": lambda: async_chain(actions, 9),
        "def": lambda: async_chain(actions, 9, "bench.plain_step"),
    }[kind]()
    executions = int(count)
    with database() as db:
        async with prana.Engine(store=f"sqlite:///{db}", actions=actions, env={}) as engine:
            await engine.run(workflow)
            before = rss_mb()
            with collections_timed() as collecting:
                started = time.perf_counter()
                results = await run_all(engine, workflow, executions)
                elapsed = time.perf_counter() - started
    assert all(result.status == "completed" for result in results)
    return {
        "nodes_per_second": executions * 10 / elapsed,
        "peak_rss_mb": peak_rss_mb(),
        # All of them are in flight at once: the growth is what live executions hold.
        "rss_kib_per_execution": (peak_rss_mb() - before) * 1024 / executions,
        "gc_share": collecting.spent / elapsed,
    }


async def loop(count: str) -> dict[str, float]:
    iterations = int(count)
    workflow = prana.load_workflow(
        {
            "id": "loop",
            "settings": {"max_iterations": iterations + 10},
            "variables": {"i": 0},
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {
                    "key": "count",
                    "type": "workflow.set_variables",
                    "params": {"values": {"i": "{{ vars.i + 1 }}"}},
                },
                {
                    "key": "more",
                    "type": "logic.if",
                    "params": {"condition": f"{{{{ vars.i < {iterations} }}}}"},
                },
                {"key": "end", "type": "core.noop"},
            ],
            "connections": [
                {"from": "start", "to": "count"},
                {"from": "count", "to": "more"},
                {"from": "more", "from_port": "true", "to": "count"},
                {"from": "more", "from_port": "false", "to": "end"},
            ],
        }
    )
    with database() as db:
        async with prana.Engine(store=f"sqlite:///{db}", env={}) as engine:
            before = rss_mb()
            started = time.perf_counter()
            handle = await engine.start(workflow)
            result = await handle.result()
            elapsed = time.perf_counter() - started
            after = rss_mb()
    assert result.status == "completed", result.error
    return {
        "rss_growth_mb": after - before,
        "peak_rss_mb": peak_rss_mb(),
        "us_per_iteration": elapsed / iterations * 1e6,
    }


def waking_loop(runs: int, wakes: int) -> prana.Workflow:
    """A loop of ``runs`` // 2 iterations, then one that waits a second in each of
    ``wakes`` iterations."""
    counted = {"type": "workflow.set_variables", "params": {"values": {"i": "{{ vars.i + 1 }}"}}}
    return prana.load_workflow(
        {
            "id": "waking",
            "settings": {"max_iterations": runs + wakes + 10},
            "variables": {"i": 0, "w": 0},
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "count", **counted},
                {"key": "more", "type": "logic.if",
                 "params": {"condition": f"{{{{ vars.i < {runs // 2} }}}}"}},
                {"key": "tick", "type": "wait.interval", "params": {"duration": "1s"}},
                {"key": "woke", "type": "workflow.set_variables",
                 "params": {"values": {"w": "{{ vars.w + 1 }}"}}},
                {"key": "again", "type": "logic.if",
                 "params": {"condition": f"{{{{ vars.w < {wakes} }}}}"}},
            ],
            "connections": [
                {"from": "start", "to": "count"},
                {"from": "count", "to": "more"},
                {"from": "more", "from_port": "true", "to": "count"},
                {"from": "more", "from_port": "false", "to": "tick"},
                {"from": "tick", "to": "woke"},
                {"from": "woke", "to": "again"},
                {"from": "again", "from_port": "true", "to": "tick"},
            ],
        }
    )  # fmt: skip


async def loading(size: str) -> dict[str, float]:
    """The app's ticker while an engine checks an N-node chain's definition, on the
    loop (``engine.validate``) and on a worker thread (``engine.load_workflow``); and
    while a durable engine starts it for the first time (saving its definition)."""
    document = chain_document(int(size))
    figures = {}
    with database() as db:
        async with prana.Engine(store=f"sqlite:///{db}", env={}) as engine:
            workflow = await engine.load_workflow(document)
            async with ticking() as ticker:
                await anyio.sleep(0.05)
                started = time.perf_counter()
                handle = await engine.start(workflow)
                figures["first_start_s"] = time.perf_counter() - started
                await anyio.sleep(0.01)
            figures["first_start_max_ms"] = ticker.figures()["max_ms"]
            await handle.result()
    for name in ("validate", "load_workflow"):
        async with prana.Engine(env={}) as engine, ticking() as ticker:
            await anyio.sleep(0.05)  # the ticker's first ticks
            started = time.perf_counter()
            if name == "validate":
                engine.validate(document)
            else:
                await engine.load_workflow(document)
            figures[f"{name}_s"] = time.perf_counter() - started
            await anyio.sleep(0.01)  # a tick after it
        figures[f"{name}_max_ms"] = ticker.figures()["max_ms"]
    return figures


async def wake(runs: str) -> dict[str, float]:
    """The time from a timer's moment to the execution's next wait, for an execution
    with ``runs`` runs behind it (on a virtual clock: the wait itself takes none)."""
    from prana.testing import VirtualClock

    wakes = 30
    clock = VirtualClock(start=1_000_000.0)
    workflow = waking_loop(int(runs), wakes)
    times = []
    with database() as db:
        async with prana.Engine(store=f"sqlite:///{db}", env={}, clock=clock) as engine:
            events = engine.events()
            waiting = await engine.run(workflow)
            assert waiting.status == "suspended", waiting.error
            for _ in range(wakes - 1):
                started = time.perf_counter()
                clock.advance(1.0)
                async for event in events:
                    if isinstance(event, prana.events.ExecutionSuspended):
                        break
                times.append(time.perf_counter() - started)
    return {"ms_per_wake": statistics.median(times) * 1000, "runs": int(runs)}


async def for_each(count: str) -> dict[str, float]:
    items = int(count)
    workflow = prana.load_workflow(
        {
            "id": "each",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "each", "type": "core.for_each", "params": {"items": "{{ input.items }}"}},
                {"key": "body", "type": "core.noop"},
                {"key": "after", "type": "core.noop"},
            ],
            "connections": [
                {"from": "start", "to": "each"},
                {"from": "each", "from_port": "loop", "to": "body"},
                {"from": "body", "to": "each"},
                {"from": "each", "from_port": "done", "to": "after"},
            ],
            "settings": {"max_iterations": items + 10},
        }
    )
    data = {"items": [{"id": n, "name": f"item {n}"} for n in range(items)]}
    async with prana.Engine(env={}) as memory:
        started = time.perf_counter()
        done = await memory.run(workflow, data)
        in_memory = time.perf_counter() - started
    assert done.status == "completed"
    with database() as db:
        async with prana.Engine(store=f"sqlite:///{db}", env={}) as engine:
            before = written()
            done = await engine.run(workflow, data)
            wrote = written() - before
    assert done.status == "completed"
    return {"us_per_iteration": in_memory / items * 1e6, "bytes_per_iteration": wrote / items}


def waiting_workflow() -> prana.Workflow:
    return prana.load_workflow(
        {
            "id": "waiting",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "approval", "type": "wait.webhook", "params": {"timeout": "1d"}},
            ],
            "connections": [{"from": "start", "to": "approval"}],
        }
    )


async def timers_make(db: str, count: str) -> dict[str, float]:
    workflow = waiting_workflow()
    async with prana.Engine(store=f"sqlite:///{db}", env={}) as engine:
        for start in range(0, int(count), 5000):
            results = await run_all(engine, workflow, min(5000, int(count) - start))
            assert all(result.status == "suspended" for result in results)
    return {"waiting": int(count)}


async def timers_start(db: str) -> dict[str, float]:
    before = rss_mb()
    async with ticking() as ticker:
        await anyio.sleep(0.01)
        ticker.lateness.clear()
        started = time.perf_counter()
        async with prana.Engine(store=f"sqlite:///{db}", env={}):
            elapsed = time.perf_counter() - started
            await anyio.sleep(0.05)
    return {
        "start_s": elapsed,
        "rss_mb": rss_mb(),
        "rss_growth_mb": rss_mb() - before,
        "stall_max_ms": ticker.figures()["max_ms"],
    }


async def ticker_w4() -> dict[str, float]:
    workflow = chain_workflow(9)
    with database() as db:
        async with prana.Engine(store=f"sqlite:///{db}", env={}) as engine:
            await engine.run(workflow)
            async with ticking() as ticker:
                started = time.perf_counter()
                await run_all(engine, workflow, 1000, paced=True)
                elapsed = time.perf_counter() - started
    return {**ticker.figures(), "nodes_per_second": 10_000 / elapsed}


async def ticker_resume() -> dict[str, float]:
    workflow = prana.load_workflow(
        {
            "id": "w5",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "approval", "type": "wait.webhook"},
                *({"key": f"b{i}", "type": "core.noop"} for i in range(5)),
            ],
            "connections": [
                {"from": a, "to": b}
                for a, b in itertools.pairwise(["start", "approval", *(f"b{i}" for i in range(5))])
            ],
        }
    )
    with database() as db:
        async with prana.Engine(store=f"sqlite:///{db}", env={}) as engine:
            waiting = await run_all(engine, workflow, 1000)
            async with ticking() as ticker, anyio.create_task_group() as group:
                for n, execution in enumerate(waiting):
                    group.start_soon(engine.resume, execution.id, {"ok": True})
                    if n % PACE == PACE - 1:
                        await anyio.lowlevel.checkpoint()
    return ticker.figures()


def big_actions(size: int) -> prana.ActionRegistry:
    actions = prana.ActionRegistry()
    # Made once: building a 10 MB string in the action held the loop for ~7 ms of
    # each step, which is the app's doing, not the engine's (the engine copies,
    # encodes and writes each node's output all the same).
    blob = "x" * size

    @actions.action("bench.big")
    def big(ctx: prana.NodeContext) -> Any:
        return {"blob": blob, "node": ctx.node_key}

    return actions


def big_chain(actions: prana.ActionRegistry) -> prana.Workflow:
    keys = ["start", *(f"n{i}" for i in range(10))]
    return prana.load_workflow(
        {
            "id": "big",
            "nodes": [{"key": "start", "type": "manual.trigger"}]
            + [{"key": key, "type": "bench.big"} for key in keys[1:]],
            "connections": [{"from": a, "to": b} for a, b in itertools.pairwise(keys)],
        },
        actions=actions,
    )


async def outputs(size: str) -> dict[str, float]:
    actions = big_actions(int(size))
    workflow = big_chain(actions)
    with database() as db:
        async with (
            prana.Engine(store=f"sqlite:///{db}", actions=actions, env={}) as engine,
            ticking() as ticker,
        ):
            done = await engine.run(workflow)
    assert done.status == "completed"
    return ticker.figures()


async def disk(size: str) -> dict[str, float]:
    actions = big_actions(int(size))
    workflow = big_chain(actions)
    with database() as db:
        async with prana.Engine(store=f"sqlite:///{db}", actions=actions, env={}) as engine:
            await run_all(engine, workflow, 200)
        with sqlite3.connect(db) as connection:
            connection.execute("VACUUM")
        connection.close()
        return {"bytes_per_execution": db.stat().st_size / 200}


ROLES = {
    "chain": chain,
    "compile": compile_,
    "loading": loading,
    "w4": w4,
    "loop": loop,
    "wake": wake,
    "for-each": for_each,
    "timers-make": timers_make,
    "timers-start": timers_start,
    "ticker-w4": ticker_w4,
    "ticker-resume": ticker_resume,
    "outputs": outputs,
    "disk": disk,
}


def main() -> None:
    role, *arguments = sys.argv[1:]
    print(json.dumps(anyio.run(ROLES[role], *arguments)))


if __name__ == "__main__":
    main()
