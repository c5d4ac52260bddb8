"""prana on PostgreSQL next to prana on SQLite (issue 21), each workload in its own
process, on a PostgreSQL cluster this script starts (Debian's ``initdb`` and
``pg_ctl``, fsync on, default settings) on a temporary folder and a Unix socket:

    python bench/postgres.py [--repeats 3] [--backend asyncio]

* W2: the 100-node chain, durable (median ms);
* W4: 1 000 concurrent 10-node chains (node executions per second), with plain
  (``def``) and ``async def`` actions that compute x + 1; and with plain actions in a
  process whose garbage collector is tuned (``prana.tune_gc()``, as ``prana serve``
  does);
* W5: 1 000 executions waiting at node 5, resumed by a new process (seconds);
* W4 with 1, 2 and 4 processes on one PostgreSQL database, 1 000 executions in all,
  started together: node executions per second over all of them;
* the same W2, W4 and W5 on DBOS with the same PostgreSQL server, if it is installed
  (``pip install -e ".[bench]"``): its steps compute x + 1, like prana's plain
  actions here.

SQLite runs at its default (``synchronous=NORMAL``). Each figure is the median of
``--repeats`` runs, with the lowest and highest; the goals are printed beside them.
The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.postgres import cluster, fresh_database, missing  # noqa: E402

EXECUTIONS = 1000


def role(name: str, db: str, *, backend: str, env: dict[str, str]) -> dict[str, Any]:
    """One role of ``durable.py`` in its own process; the JSON it prints."""
    done = subprocess.run(
        [sys.executable, str(HERE / "durable.py"), name, db, "NORMAL", backend],
        capture_output=True, text=True, timeout=1800, env={**os.environ, **env}, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{name} on {db} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(lines[-1]))


def dbos(name: str, db: str) -> dict[str, Any]:
    """One role of DBOS's workloads (``peers.py``) on ``db``, in its own process."""
    done = subprocess.run(
        [sys.executable, str(HERE / "peers.py"), "dbos", name, db],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"DBOS {name} on {db} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(lines[-1]))


def shared_w4(url: str, processes: int, env: dict[str, str]) -> float:
    """W4's executions split over ``processes`` processes on one database, started
    together: node executions per second over all of them."""
    share = {"PRANA_BENCH_SHARE": str(EXECUTIONS // processes)}
    command = [sys.executable, str(HERE / "durable.py"), "w4-share", url, "NORMAL"]
    running = [
        subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env, **share},
        )
        for _ in range(processes)
    ]
    for process in running:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY"
    for process in running:  # go
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    figures = []
    for process in running:
        out, err = process.communicate(timeout=1800)
        if process.returncode != 0:
            raise RuntimeError(f"w4-share failed:\n{err[-3000:]}")
        figures.append(json.loads(out.strip().splitlines()[-1]))
    began = min(f["began"] for f in figures)
    ended = max(f["ended"] for f in figures)
    return sum(f["nodes"] for f in figures) / (ended - began)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    options = parser.parse_args()
    why = missing()
    if why is not None:
        sys.exit(f"bench/postgres.py: {why}")
    plain = {"PRANA_BENCH_LIKE_PEERS": "1", "PRANA_BENCH_ASYNC": "0"}
    asynchronous = {"PRANA_BENCH_LIKE_PEERS": "1", "PRANA_BENCH_ASYNC": "1"}
    figures: dict[str, list[float]] = {}
    with_dbos = importlib.util.find_spec("dbos") is not None

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    # The cluster's folder is its own (its server may run as another user).
    server_folder = Path(tempfile.mkdtemp(prefix="prana-bench-pg-"))
    with tempfile.TemporaryDirectory(prefix="prana-bench-") as name:
        folder = Path(name)
        with cluster(server_folder, fsync=True) as server:
            for repeat in range(options.repeats):
                print(f"round {repeat + 1} of {options.repeats} ...", flush=True)
                for store in ("SQLite", "PostgreSQL"):

                    def db(store: str = store) -> str:
                        if store == "PostgreSQL":
                            return fresh_database(server)
                        return str(folder / f"bench-{time.monotonic_ns()}.db")

                    w2 = role("w2", db(), backend=options.backend, env=plain)
                    add(f"W2 ms, {store}", w2["w2_ms"])
                    for label, env in (
                        ("plain actions", plain),
                        ("async actions", asynchronous),
                        ("plain actions, collector tuned", {**plain, "PRANA_BENCH_TUNE_GC": "1"}),
                    ):
                        w4 = role("w4", db(), backend=options.backend, env=env)
                        add(f"W4 nodes/s, {label}, {store}", w4["nodes_per_second"])
                    waiting = db()
                    role("w5-suspend", waiting, backend=options.backend, env=plain)
                    w5 = role("w5-resume", waiting, backend=options.backend, env=plain)
                    add(f"W5 resume s, {store}", w5["seconds"])
                for processes in (1, 2, 4):
                    rate = shared_w4(fresh_database(server), processes, asynchronous)
                    add(f"W4 nodes/s, async actions, {processes} process(es), PostgreSQL", rate)
                if with_dbos:
                    add("W2 ms, DBOS on PostgreSQL", dbos("w2", fresh_database(server))["w2_ms"])
                    w4 = dbos("w4", fresh_database(server))
                    add("W4 nodes/s, DBOS on PostgreSQL", w4["nodes_per_second"])
                    waiting = fresh_database(server)
                    dbos("w5-suspend", waiting)
                    add("W5 resume s, DBOS on PostgreSQL", dbos("w5-resume", waiting)["seconds"])
    shutil.rmtree(server_folder, ignore_errors=True)
    print(f"\nprana on PostgreSQL and on SQLite, {options.backend}; median (lowest-highest)")
    for name, values in figures.items():
        print(f"  {name}: {spread(values)}")
    median = {name: statistics.median(values) for name, values in figures.items()}
    for label in ("plain", "async"):
        pg = median[f"W4 nodes/s, {label} actions, PostgreSQL"]
        lite = median[f"W4 nodes/s, {label} actions, SQLite"]
        mark = "met    " if pg >= lite / 2 else "not met"
        print(f"  {mark}  W4 ({label}) on PostgreSQL >= half of SQLite's: {pg / lite:.2f}x")
    pg = median["W4 nodes/s, plain actions, collector tuned, PostgreSQL"]
    lite = median["W4 nodes/s, plain actions, collector tuned, SQLite"]
    print(
        f"           the same with the collector tuned on both, as prana serve runs: "
        f"{pg / lite:.2f}x"
    )
    one = median["W4 nodes/s, async actions, 1 process(es), PostgreSQL"]
    two = median["W4 nodes/s, async actions, 2 process(es), PostgreSQL"]
    mark = "met    " if two >= one else "not met"
    print(f"  {mark}  no loss when a second process joins: {two / one:.2f}x of one process")
    if with_dbos:
        peer = median["W4 nodes/s, DBOS on PostgreSQL"]
        ours = median["W4 nodes/s, plain actions, PostgreSQL"]
        mark = "met    " if ours >= 5 * peer else "not met"
        print(f"  {mark}  W4 on PostgreSQL >= 5x DBOS's on the same server: {ours / peer:.1f}x")
    else:
        print('  (DBOS not installed: pip install -e ".[bench]" to compare with it)')
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
