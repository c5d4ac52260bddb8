"""prana benchmarks: figures and ratios, printed; never pass/fail.

    python bench/run.py                 # everything, both backends
    python bench/run.py --quick         # fewer repetitions
    python bench/run.py --backend trio  # one backend

Workloads (issue 2):
  floor  one anyio task spawn + one memory-channel round trip: the least a node
         costs in the actor design (a worker task that sends its result back)
  W1     a linear chain: trigger + 100 trivial nodes, in memory
  W1b    trigger -> 10 branches x 10 nodes -> merge, in memory

For each: the median wall time of one execution, the time per node, and the
per-node overhead as a multiple of the floor measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import branches_workflow, chain_workflow

import prana


async def _spawn_and_reply(send: anyio.abc.ObjectSendStream[int], value: int) -> None:
    async with send:
        await send.send(value)


async def measure_floor(rounds: int) -> float:
    """Microseconds for one task spawn plus one memory-channel round trip."""
    send, receive = anyio.create_memory_object_stream[int](100)
    async with send, receive, anyio.create_task_group() as tasks:
        started = time.perf_counter()
        for index in range(rounds):
            tasks.start_soon(_spawn_and_reply, send.clone(), index)
            await receive.receive()
        elapsed = time.perf_counter() - started
    return elapsed / rounds * 1e6


async def time_runs(run: Callable[[], Awaitable[object]], repeats: int) -> list[float]:
    """Wall times (ms) of ``repeats`` runs, with the GC quiet."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            await run()
            times.append((time.perf_counter() - started) * 1000)
    finally:
        gc.enable()
    return times


async def bench_backend(rounds: int) -> dict[str, float]:
    """Interleave the floor and the workloads, round after round, so that a machine
    that speeds up or slows down during the run affects them alike."""
    workloads = {"W1": chain_workflow(100), "W1b": branches_workflow(10, 10)}
    floors: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in workloads}
    async with prana.Engine(env={}) as engine:

        def runner(workflow: prana.Workflow) -> Callable[[], Awaitable[object]]:
            async def run_once() -> object:
                result = await engine.run(workflow)
                assert result.status == "completed", result.error
                return result

            return run_once

        for workflow in workloads.values():
            await time_runs(runner(workflow), 20)  # warm up
        for _ in range(rounds):
            floors.append(await measure_floor(500))
            for name, workflow in workloads.items():
                times[name].extend(await time_runs(runner(workflow), 10))
    figures = {"floor_us": statistics.median(floors)}
    for name, workflow in workloads.items():
        median = statistics.median(times[name])
        figures[f"{name}_ms"] = median
        figures[f"{name}_p90_ms"] = statistics.quantiles(times[name], n=10)[-1]
        figures[f"{name}_per_node_us"] = median * 1000 / len(workflow.nodes)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), action="append")
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions (less stable figures)"
    )
    options = parser.parse_args()
    backends = options.backend or ["asyncio", "trio"]
    rounds = 5 if options.quick else 30
    print(
        f"prana {prana.__version__} on Python {platform.python_version()}, {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores; {rounds * 10} runs of each workload in {rounds} "
        "interleaved rounds; medians\n"
    )
    header = (
        f"{'backend':<8} {'floor µs':>9} {'W1 ms':>8} {'W1 p90':>8} {'W1 µs/node':>11} {'÷ floor':>8} "
        f"{'W1b ms':>8} {'W1b µs/node':>12} {'÷ floor':>8}"
    )
    print(header)
    print("-" * len(header))
    for backend in backends:
        figures = anyio.run(bench_backend, rounds, backend=backend)
        floor = figures["floor_us"]
        print(
            f"{backend:<8} {floor:>9.1f} {figures['W1_ms']:>8.2f} {figures['W1_p90_ms']:>8.2f} "
            f"{figures['W1_per_node_us']:>11.1f} {figures['W1_per_node_us'] / floor:>7.2f}x "
            f"{figures['W1b_ms']:>8.2f} {figures['W1b_per_node_us']:>12.1f} {figures['W1b_per_node_us'] / floor:>7.2f}x"
        )
    print("\nGoals (issue 2): per-node overhead at most 2x the floor on asyncio; W1 under 8 ms.")


if __name__ == "__main__":
    main()
