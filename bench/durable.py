"""Durable workloads (issue 3), each run in its own process so that peak memory and
"the process exits" are real:

    python bench/durable.py w2 DB SYNC BACKEND   -> median ms of the 100-node chain, durable
    python bench/durable.py w4 DB SYNC           -> 1000 concurrent 10-node chains, durable
    python bench/durable.py w4-busy DB SYNC      -> the same while the app keeps the loop busy
    python bench/durable.py w5-suspend DB SYNC   -> 1000 executions waiting at node 5
    python bench/durable.py w5-resume DB SYNC    -> resume them all, 5 more nodes each
    python bench/durable.py w5-resume-busy DB SYNC -> the same while the app keeps the loop busy

Each prints one line of JSON. ``bench/run.py`` runs them and prints the table.
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
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio.lowlevel
import anyio.to_thread
from workloads import ACTIONS, chain_workflow, node_type

import prana

EXECUTIONS = 1000


def store_url(db: str, synchronous: str) -> str:
    """A SQLite file's URL with ``synchronous``; a store URL (PostgreSQL) as it is."""
    return db if "://" in db else f"sqlite:///{db}?synchronous={synchronous}"


def suspending_chain() -> prana.Workflow:
    """5 nodes, a wait, 5 nodes: W5's workflow."""
    nodes = [{"key": "start", "type": "manual.trigger"}]
    nodes += [{"key": f"a{i}", "type": node_type()} for i in range(4)]
    nodes += [{"key": "wait", "type": "wait.webhook"}]
    nodes += [{"key": f"b{i}", "type": node_type()} for i in range(5)]
    keys = [node["key"] for node in nodes]
    connections = [{"from": a, "to": b} for a, b in itertools.pairwise(keys)]
    return prana.load_workflow(
        {"id": "w5", "nodes": nodes, "connections": connections}, actions=ACTIONS
    )


async def run_all(
    engine: prana.Engine, workflow: prana.Workflow, count: int
) -> list[prana.Execution]:
    """``count`` executions of ``workflow`` run concurrently, as the peers' are."""
    results: list[prana.Execution] = []

    async def run_one(n: int) -> None:
        results.append(await engine.run(workflow, {"n": n}))

    async with anyio.create_task_group() as group:
        for n in range(count):
            group.start_soon(run_one, n)
    return results


async def resume_all(engine: prana.Engine, execution_ids: list[str]) -> list[prana.Execution]:
    """Each execution resumed with ``{"ok": True}``, all at once, as W5 resumes them:
    what the resumes returned."""
    finished: list[prana.Execution] = []

    async def resume(execution_id: str) -> None:
        finished.append(await engine.resume(execution_id, {"ok": True}))

    async with anyio.create_task_group() as group:
        for execution_id in execution_ids:
            group.start_soon(resume, execution_id)
    return finished


async def w2(db: str, synchronous: str) -> dict[str, float]:
    # A checkpoint after every node: core.noop is pure, and saved with the next.
    node = node_type()
    chain = chain_workflow(100, "bench.pass" if node == "core.noop" else node)
    memory_times, durable_times = [], []
    async with (
        prana.Engine(actions=ACTIONS, env={}) as memory,
        prana.Engine(store=store_url(db, synchronous), actions=ACTIONS, env={}) as durable,
    ):
        for engine in (memory, durable):
            for _ in range(10):
                await engine.run(chain)
        gc.collect()
        gc.disable()
        for _ in range(30):  # interleaved, so that drift affects both alike
            for engine, times in ((memory, memory_times), (durable, durable_times)):
                started = time.perf_counter()
                result = await engine.run(chain)
                times.append((time.perf_counter() - started) * 1000)
                assert result.status == "completed"
        gc.enable()
    return {"w1_ms": statistics.median(memory_times), "w2_ms": statistics.median(durable_times)}


async def w4(db: str, synchronous: str) -> dict[str, float]:
    return await _w4(db, synchronous, busy=False)


async def w4_busy(db: str, synchronous: str) -> dict[str, float]:
    """W4 while another task of the app keeps the event loop busy about half the
    time (2 ms of work, then it yields): commits and the WAL's checkpoints must get
    their turn while the loop runs Python, not only while it waits."""
    return await _w4(db, synchronous, busy=True)


@contextlib.asynccontextmanager
async def _app_load(busy: bool) -> AsyncIterator[None]:
    """With ``busy``, another task of the app keeps the event loop busy while inside:
    2 ms of work, then a yield, again and again."""
    stop = anyio.Event()

    async def keep_busy() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            while time.perf_counter() - started < 0.002:
                pass
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as app:
        if busy:
            app.start_soon(keep_busy)
        try:
            yield
        finally:
            stop.set()


async def _w4(db: str, synchronous: str, *, busy: bool) -> dict[str, float]:
    chain = chain_workflow(9, node_type())  # trigger + 9: a 10-node chain
    async with prana.Engine(store=store_url(db, synchronous), actions=ACTIONS, env={}) as engine:
        await engine.run(chain)  # warm up: the definition is stored
        async with _app_load(busy):
            started = time.perf_counter()
            results = await run_all(engine, chain, EXECUTIONS)
            elapsed = time.perf_counter() - started
        assert all(result.status == "completed" for result in results)
        batches = engine.statistics().commits
    nodes = EXECUTIONS * len(chain.nodes)
    figures = {
        "seconds": elapsed,
        "nodes_per_second": nodes / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "commits": batches,
    }
    if "://" not in db:
        with sqlite3.connect(db) as connection:
            count = connection.execute("SELECT count(*) FROM executions").fetchone()[0]
        figures["bytes_per_execution"] = os.path.getsize(db) / count
    return figures


async def w4_share(db: str, synchronous: str) -> dict[str, float]:
    """W4's 10-node chains, ``$PRANA_BENCH_SHARE`` of them, in one of several
    processes on one store: each says READY, waits for a line on its input, so that
    they start together, and says when it began and ended (epoch seconds)."""
    chain = chain_workflow(9, node_type())
    count = int(os.environ["PRANA_BENCH_SHARE"])
    async with prana.Engine(store=store_url(db, synchronous), actions=ACTIONS, env={}) as engine:
        await engine.run(chain)  # warm up: the definition is stored
        print("READY", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        began = time.time()
        results = await run_all(engine, chain, count)
        ended = time.time()
    assert all(result.status == "completed" for result in results)
    return {"began": began, "ended": ended, "nodes": count * len(chain.nodes)}


async def w5_suspend(db: str, synchronous: str) -> dict[str, float]:
    workflow = suspending_chain()
    async with prana.Engine(store=store_url(db, synchronous), actions=ACTIONS, env={}) as engine:
        results = await run_all(engine, workflow, EXECUTIONS)
        assert all(result.status == "suspended" for result in results)
        live = engine.live_count
    return {"suspended": len(results), "live_after": live}


async def w5_resume(db: str, synchronous: str) -> dict[str, float]:
    return await _w5_resume(db, synchronous, busy=False)


async def w5_resume_busy(db: str, synchronous: str) -> dict[str, float]:
    """W5's resume while another task of the app keeps the event loop busy (as
    :func:`w4_busy`): every resume reads its execution from the store first."""
    return await _w5_resume(db, synchronous, busy=True)


async def _w5_resume(db: str, synchronous: str, *, busy: bool) -> dict[str, float]:
    async with (
        prana.Engine(store=store_url(db, synchronous), actions=ACTIONS, env={}) as engine,
        _app_load(busy),
    ):
        started = time.perf_counter()
        waiting = await engine.list_executions(status="suspended", limit=10 * EXECUTIONS)
        finished = await resume_all(engine, [execution.id for execution in waiting])
        elapsed = time.perf_counter() - started
    assert len(finished) == EXECUTIONS
    assert all(execution.status == "completed" for execution in finished)
    assert all(len(execution.node_runs) == 11 for execution in finished)
    return {"seconds": elapsed}


def main() -> None:
    role, db, synchronous = sys.argv[1], sys.argv[2], sys.argv[3]
    backend = sys.argv[4] if len(sys.argv) > 4 else "asyncio"
    if os.environ.get("PRANA_BENCH_TUNE_GC") == "1":
        prana.tune_gc()
    work = {
        "w2": w2,
        "w4": w4,
        "w4-busy": w4_busy,
        "w4-share": w4_share,
        "w5-suspend": w5_suspend,
        "w5-resume": w5_resume,
        "w5-resume-busy": w5_resume_busy,
    }[role]
    print(json.dumps(anyio.run(work, db, synchronous, backend=backend)))


if __name__ == "__main__":
    main()
