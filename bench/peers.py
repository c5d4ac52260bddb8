"""The durable workloads on LangGraph and DBOS, for comparison (``pip install -e ".[bench]"``).

    python bench/peers.py langgraph w2 DB      -> median ms of a 100-node chain, a checkpoint per node
    python bench/peers.py langgraph w4 DB      -> 1000 concurrent 10-node chains
    python bench/peers.py langgraph w5-suspend DB / w5-resume DB
    python bench/peers.py dbos ...             -> the same on DBOS

Each prints one line of JSON, like ``bench/durable.py``. Both peers use SQLite with
its default ``synchronous=FULL``; LangGraph runs with ``durability="sync"`` (a
checkpoint is saved before the next step starts), as prana does.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sqlite3
import statistics
import sys
import time
from typing import Any, TypedDict

EXECUTIONS = 1000


# --------------------------------------------------------------------------- LangGraph


class State(TypedDict):
    n: int


def langgraph_chain(length: int, checkpointer: Any, wait_at: int | None = None) -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    graph = StateGraph(State)
    previous = START
    for index in range(length):
        name = f"n{index}"
        if index == wait_at:

            def node(state: State) -> State:
                interrupt("approve?")
                return {"n": state["n"] + 1}

        else:

            def node(state: State) -> State:
                return {"n": state["n"] + 1}

        graph.add_node(name, node)
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=checkpointer)


def langgraph_w2(db: str) -> dict[str, float]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = sqlite3.connect(db, check_same_thread=False)
    graph = langgraph_chain(100, SqliteSaver(connection))
    times = []
    for run in range(25):
        started = time.perf_counter()
        graph.invoke({"n": 0}, {"configurable": {"thread_id": f"w2-{run}"}}, durability="sync")
        times.append((time.perf_counter() - started) * 1000)
    return {"w2_ms": statistics.median(times[5:])}


async def langgraph_w4(db: str) -> dict[str, float]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        graph = langgraph_chain(10, saver)
        await graph.ainvoke({"n": 0}, {"configurable": {"thread_id": "warm"}}, durability="sync")
        started = time.perf_counter()
        await asyncio.gather(
            *(
                graph.ainvoke(
                    {"n": 0}, {"configurable": {"thread_id": f"w4-{run}"}}, durability="sync"
                )
                for run in range(EXECUTIONS)
            )
        )
        elapsed = time.perf_counter() - started
    return _w4_figures(db, elapsed, EXECUTIONS + 1)


async def langgraph_w5(db: str, resume: bool) -> dict[str, float]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.types import Command

    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        graph = langgraph_chain(10, saver, wait_at=5)
        configs = [{"configurable": {"thread_id": f"w5-{run}"}} for run in range(EXECUTIONS)]
        if not resume:
            await asyncio.gather(
                *(graph.ainvoke({"n": 0}, config, durability="sync") for config in configs)
            )
            return {"suspended": EXECUTIONS}
        started = time.perf_counter()
        results = await asyncio.gather(
            *(graph.ainvoke(Command(resume=True), config, durability="sync") for config in configs)
        )
        elapsed = time.perf_counter() - started
    assert all(result["n"] == 10 for result in results)
    return {"seconds": elapsed}


# --------------------------------------------------------------------------- DBOS


def dbos_launch(db: str) -> Any:
    from dbos import DBOS

    DBOS(
        config={
            "name": "prana-bench",
            # A PostgreSQL URL as given (bench/postgres.py), else a SQLite file.
            "system_database_url": db if "://" in db else f"sqlite:///{db}",
            "run_admin_server": False,
        }
    )

    @DBOS.step()
    def step(n: int) -> int:
        return n + 1

    @DBOS.workflow()
    def chain(length: int, n: int) -> int:
        for _ in range(length):
            n = step(n)
        return n

    @DBOS.workflow()
    def waiting_chain(n: int) -> int:
        for _ in range(5):
            n = step(n)
        DBOS.recv("go", timeout_seconds=3600)
        for _ in range(5):
            n = step(n)
        return n

    DBOS.launch()
    return DBOS, chain, waiting_chain


def dbos_w2(db: str) -> dict[str, float]:
    dbos, chain, _ = dbos_launch(db)
    times = []
    for _ in range(25):
        started = time.perf_counter()
        chain(100, 0)
        times.append((time.perf_counter() - started) * 1000)
    dbos.destroy()
    return {"w2_ms": statistics.median(times[5:])}


def dbos_w4(db: str) -> dict[str, float]:
    dbos, chain, _ = dbos_launch(db)
    chain(10, 0)
    started = time.perf_counter()
    handles = [dbos.start_workflow(chain, 10, run) for run in range(EXECUTIONS)]
    for handle in handles:
        handle.get_result()
    elapsed = time.perf_counter() - started
    dbos.destroy()
    return _w4_figures(db, elapsed, EXECUTIONS + 1)


def dbos_w5(db: str, resume: bool) -> dict[str, float]:
    from dbos import SetWorkflowID

    dbos, _, waiting_chain = dbos_launch(db)
    ids = [f"w5-{run}" for run in range(EXECUTIONS)]
    if not resume:
        for workflow_id in ids:
            with SetWorkflowID(workflow_id):
                dbos.start_workflow(waiting_chain, 0)
        while any(len(dbos.list_workflow_steps(workflow_id)) < 6 for workflow_id in ids[-5:]):
            time.sleep(0.05)  # the last ones started have reached their recv
        time.sleep(0.5)
        print(json.dumps({"suspended": EXECUTIONS}), flush=True)
        os._exit(0)  # the process exits with the workflows waiting
    started = time.perf_counter()
    for workflow_id in ids:
        dbos.send(workflow_id, "ok", "go")
    results = [dbos.retrieve_workflow(workflow_id).get_result() for workflow_id in ids]
    elapsed = time.perf_counter() - started
    dbos.destroy()
    assert all(result == 10 for result in results)
    return {"seconds": elapsed}


# --------------------------------------------------------------------------- shared


def _w4_figures(db: str, elapsed: float, executions: int) -> dict[str, float]:
    nodes = EXECUTIONS * 10
    files = () if "://" in db else (db, f"{db}-wal")
    size = sum(os.path.getsize(path) for path in files if os.path.exists(path))
    return {
        "seconds": elapsed,
        "nodes_per_second": nodes / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bytes_per_execution": size / executions,
    }


def main() -> None:
    peer, role, db = sys.argv[1], sys.argv[2], sys.argv[3]
    if peer == "langgraph":
        work: dict[str, Any] = {
            "w2": lambda: langgraph_w2(db),
            "w4": lambda: asyncio.run(langgraph_w4(db)),
            "w5-suspend": lambda: asyncio.run(langgraph_w5(db, resume=False)),
            "w5-resume": lambda: asyncio.run(langgraph_w5(db, resume=True)),
        }
    else:
        work = {
            "w2": lambda: dbos_w2(db),
            "w4": lambda: dbos_w4(db),
            "w5-suspend": lambda: dbos_w5(db, resume=False),
            "w5-resume": lambda: dbos_w5(db, resume=True),
        }
    print(json.dumps(work[role]()))


if __name__ == "__main__":
    main()
