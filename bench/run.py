"""prana benchmarks: figures and ratios, printed; never pass/fail.

    python bench/run.py                 # everything, both backends
    python bench/run.py --quick         # fewer repetitions
    python bench/run.py --backend trio  # one backend

Durable workloads (issue 3) follow, each in its own process: W2, W4 (with W6's
peak memory and bytes on disk) and W5, with SQLite synchronous=NORMAL and FULL, and
on LangGraph and DBOS when they are installed (pip install -e ".[bench]").

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
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workloads import branches_workflow, chain_workflow  # noqa: E402

import prana  # noqa: E402


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


def _child(
    script: str, *args: str, tune_gc: bool = False, like_peers: bool = False
) -> dict[str, Any]:
    """Run a benchmark role in its own process; return the JSON it prints."""
    environment = {
        **os.environ,
        "PRANA_BENCH_TUNE_GC": "1" if tune_gc else "0",
        "PRANA_BENCH_LIKE_PEERS": "1" if like_peers else "0",
    }
    done = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
        env=environment,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def durable_figures(
    folder: Path,
    script: str,
    prefix: list[str],
    suffix: list[str],
    *,
    tune_gc: bool = False,
    like_peers: bool = False,
    repeats: int = 1,
    busy: bool = False,
) -> dict[str, float]:
    """W2, W4 (with W6's memory and disk) and W5 for one configuration, and with
    ``busy`` W4 while the app keeps the loop busy. W4 and W5 run ``repeats`` times,
    each in new processes on a new file; the median run is kept (a virtual
    machine's speed drifts from one second to the next)."""

    def run(role: str, db: str) -> dict[str, Any]:
        return _child(
            script, *prefix, role, str(folder / db), *suffix, tune_gc=tune_gc, like_peers=like_peers
        )

    def median_of(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
        return sorted(runs, key=lambda figures: figures[key])[len(runs) // 2]

    figures: dict[str, float] = dict(run("w2", "w2.db"))
    w4 = median_of([run("w4", f"w4-{n}.db") for n in range(repeats)], "nodes_per_second")
    figures.update({f"w4_{key}": value for key, value in w4.items()})
    if busy:
        runs = [run("w4-busy", f"w4-busy-{n}.db") for n in range(repeats)]
        figures["w4_busy_nodes_per_second"] = median_of(runs, "nodes_per_second")[
            "nodes_per_second"
        ]
    w5, w5_busy = [], []
    for n in range(repeats):
        suspended = run("w5-suspend", f"w5-{n}.db")
        if "live_after" in suspended:  # executions still in memory once all wait
            figures["w5_live_after"] = max(figures.get("w5_live_after", 0), suspended["live_after"])
        if busy:  # a copy of the same waiting executions
            for ending in (".db", ".db-wal"):
                if (folder / f"w5-{n}{ending}").exists():
                    shutil.copyfile(folder / f"w5-{n}{ending}", folder / f"w5-busy-{n}{ending}")
            w5_busy.append(run("w5-resume-busy", f"w5-busy-{n}.db"))
        w5.append(run("w5-resume", f"w5-{n}.db"))
    figures["w5_seconds"] = median_of(w5, "seconds")["seconds"]
    if w5_busy:
        figures["w5_busy_seconds"] = median_of(w5_busy, "seconds")["seconds"]
    return figures


def print_durable(peers: bool) -> None:
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="prana-bench-") as root:
        configurations = (
            ("NORMAL", False, False),
            ("FULL", False, False),
            ("NORMAL", True, False),
            ("FULL", False, True),
        )
        for synchronous, tuned, like_peers in configurations:
            name = (
                f"prana {synchronous}" + (" +gc" if tuned else "") + (" x+1" if like_peers else "")
            )
            folder = Path(root) / name.replace(" +", "-").replace(" ", "-")
            folder.mkdir()
            print(f"  measuring {name} ...", flush=True)
            rows[name] = durable_figures(
                folder,
                "durable.py",
                [],
                [synchronous],
                tune_gc=tuned,
                like_peers=like_peers,
                repeats=3,
                busy=not like_peers,
            )
        if peers:
            for peer, module in (("LangGraph", "langgraph.checkpoint.sqlite"), ("DBOS", "dbos")):
                if importlib.util.find_spec(module.split(".")[0]) is None:
                    print(f"  {peer} is not installed: skipped (pip install -e '.[bench]')")
                    continue
                folder = Path(root) / peer
                folder.mkdir()
                print(f"  measuring {peer} (SQLite, synchronous=FULL) ...", flush=True)
                rows[peer] = durable_figures(folder, "peers.py", [peer.lower()], [])
    names = list(rows)
    print()
    print(f"{'':38}" + "".join(f"{name:>18}" for name in names))
    metrics = [
        ("W1 ms (memory, same run as W2)", "w1_ms", "{:.1f}"),
        ("W2 ms (100-node chain, durable)", "w2_ms", "{:.1f}"),
        ("W4 durable node executions / s", "w4_nodes_per_second", "{:.0f}"),
        ("W4 /s, the app keeps the loop busy", "w4_busy_nodes_per_second", "{:.0f}"),
        ("W5 s (resume 1000, 5 nodes each)", "w5_seconds", "{:.2f}"),
        ("W5 s, the app keeps the loop busy", "w5_busy_seconds", "{:.2f}"),
        ("W6 peak RSS of W4, MiB", "w4_peak_rss_mb", "{:.0f}"),
        ("W6 bytes on disk / execution", "w4_bytes_per_execution", "{:.0f}"),
    ]
    for label, key, form in metrics:
        cells = "".join(
            f"{form.format(rows[name][key]) if key in rows[name] else '-':>16}" for name in names
        )
        print(f"{label:38}{cells}")
    ours = rows["prana NORMAL"]
    like = rows["prana FULL x+1"]
    print("\n(prana NORMAL +gc: the process calls prana.tune_gc() first; see docs/durability.md)")
    print("(prana FULL x+1: the peers' workload, nodes that compute x + 1, at their setting)")
    for name in names[4:]:
        theirs = rows[name]
        print(
            f"\nLike for like, prana FULL x+1 vs {name}: "
            f"W2 {theirs['w2_ms'] / like['w2_ms']:.1f}x faster, "
            f"W4 {like['w4_nodes_per_second'] / theirs['w4_nodes_per_second']:.1f}x the throughput, "
            f"W5 {theirs['w5_seconds'] / like['w5_seconds']:.1f}x faster, "
            f"{theirs['w4_bytes_per_execution'] / like['w4_bytes_per_execution']:.1f}x less disk"
        )
    ratio = ours["w2_ms"] / ours["w1_ms"]
    goals = [
        (f"W2 within 3x of W1 ({ratio:.1f}x)", ratio <= 3.0),
        (
            f"W4 >= 10 000 /s ({ours['w4_nodes_per_second']:.0f})",
            ours["w4_nodes_per_second"] >= 10_000,
        ),
        (f"W5 < 2 s ({ours['w5_seconds']:.2f})", ours["w5_seconds"] < 2.0),
        (
            f"under 3 KiB per execution ({ours['w4_bytes_per_execution']:.0f} B)",
            ours["w4_bytes_per_execution"] < 3 * 1024,
        ),
        (
            f"waiting executions hold no memory ({ours['w5_live_after']:.0f} left in memory)",
            ours["w5_live_after"] == 0,
        ),
    ]
    print("\nGoals (issue 3), prana NORMAL:")
    for goal, met in goals:
        print(f"  {'met    ' if met else 'not met'}  {goal}")


def print_scaling(repeats: int) -> None:
    """Issue 17: how cost grows with the work, each figure next to its goal. Every
    figure is the median of ``repeats`` runs, each role in a new process."""

    def median(role: str, *args: str) -> dict[str, float]:
        runs = [_child("scaling.py", role, *args) for _ in range(repeats)]
        return {key: statistics.median(run[key] for run in runs) for key in runs[0]}

    goals: list[tuple[str, str, bool]] = []

    def goal(what: str, figure: str, met: bool) -> None:
        goals.append((what, figure, met))
        print(f"  {'met    ' if met else 'not met'}  {what}: {figure}", flush=True)

    print("\nDurable chains, one execution at a time (µs and bytes written per node):")
    sizes = (10, 100, 1000, 10_000)
    chains = {size: median("chain", str(size)) for size in sizes}
    print(f"  {'nodes':>8}" + "".join(f"{size:>10}" for size in sizes))
    print(f"  {'µs':>8}" + "".join(f"{chains[n]['us_per_node']:>10.0f}" for n in sizes))
    print(f"  {'KB':>8}" + "".join(f"{chains[n]['bytes_per_node'] / 1000:>10.1f}" for n in sizes))
    times = [chains[n]["us_per_node"] for n in sizes]
    goal("µs per node flat within 1.5x from 10 to 10 000 nodes",
         f"{max(times) / min(times):.2f}x", max(times) <= 1.5 * min(times))  # fmt: skip
    grown = max(chains[n]["bytes_per_node"] for n in (1000, 10_000)) / chains[100]["bytes_per_node"]
    goal("bytes per node do not grow with the workflow (1 000 and 10 000 within 2x of 100)",
         f"{grown:.2f}x", grown <= 2.0)  # fmt: skip

    print("\nLoading and compiling:")
    compiled = median("compile", "10000")
    for name, key in (("10 000-node chain", "chain_s"), ("10 000-branch fan-out", "fan_s")):
        goal(f"load + compile a {name} < 0.5 s", f"{compiled[key]:.2f} s", compiled[key] < 0.5)
    loaded = median("loading", "10000")
    print(f"           the app's ticker while a 10 000-node chain is checked: largest lateness "
          f"{loaded['load_workflow_max_ms']:.0f} ms with engine.load_workflow "
          f"({loaded['load_workflow_s']:.2f} s), {loaded['validate_max_ms']:.0f} ms with "
          f"engine.validate on the loop ({loaded['validate_s']:.2f} s); "
          f"{loaded['first_start_max_ms']:.0f} ms while a durable engine first starts it "
          f"(saving its definition, {loaded['first_start_s']:.2f} s)")  # fmt: skip

    print("\nMany executions at once (10-node chains, durable):")
    counts = (100, 1000, 10_000)
    w4 = {count: median("w4", str(count)) for count in counts}
    print(f"  {'in flight':>10}" + "".join(f"{count:>10}" for count in counts))
    print(f"  {'nodes/s':>10}" + "".join(f"{w4[n]['nodes_per_second']:>10.0f}" for n in counts))
    print(f"  {'GC share':>10}" + "".join(f"{w4[n]['gc_share']:>10.0%}" for n in counts))
    print(
        f"  {'KiB/exec':>10}" + "".join(f"{w4[n]['rss_kib_per_execution']:>10.1f}" for n in counts)
    )
    kept = w4[10_000]["nodes_per_second"] / w4[1000]["nodes_per_second"]
    goal("10 000 in flight keep >= 80% of the 1 000 figure", f"{kept:.0%}", kept >= 0.8)
    per_execution = w4[10_000]["rss_kib_per_execution"]
    goal("<= 10 KiB of memory per live execution", f"{per_execution:.1f} KiB", per_execution <= 10)
    share = w4[1000]["gc_share"]
    goal("the garbage collector's share at 1 000 in flight <= 10%", f"{share:.0%}", share <= 0.1)
    asynchronous = median("w4", "1000", "async")["nodes_per_second"]
    goal("with async def actions >= 10 000 nodes/s", f"{asynchronous:.0f}", asynchronous >= 10_000)
    plain = median("w4", "1000", "def")["nodes_per_second"]
    print(f"           with plain def actions of the app's (copies made, outputs checked, "
          f"a checkpoint per node): {plain:.0f} nodes/s")  # fmt: skip

    print("\nLong loops:")
    looped = median("loop", "100000")
    goal("RSS after 100 000 iterations of a 2-node loop grows <= 10 MiB",
         f"+{looped['rss_growth_mb']:.0f} MiB", looped["rss_growth_mb"] <= 10)  # fmt: skip
    behind = (1000, 10_000, 100_000)
    wakes = {runs: median("wake", str(runs))["ms_per_wake"] for runs in behind}
    print(f"  {'runs behind':>12}" + "".join(f"{runs:>10}" for runs in behind))
    print(f"  {'ms per wake':>12}" + "".join(f"{wakes[runs]:>10.1f}" for runs in behind))
    goal("a wait's wake with 10 000 runs behind it within 1.5x of one with 1 000",
         f"{wakes[1000]:.1f} -> {wakes[10_000]:.1f} ms", wakes[10_000] <= 1.5 * wakes[1000])  # fmt: skip
    each = {count: median("for-each", str(count)) for count in (1000, 10_000)}
    for key, unit, scale in (("us_per_iteration", "µs", 1), ("bytes_per_iteration", "KB", 1000)):
        small, large = each[1000][key] / scale, each[10_000][key] / scale
        goal(f"core.for_each {unit} per iteration flat from 1 000 to 10 000 items (1.5x)",
             f"{small:.1f} -> {large:.1f} {unit}", large <= 1.5 * small)  # fmt: skip

    print("\n100 000 executions waiting with a timeout:")
    with tempfile.TemporaryDirectory(prefix="prana-bench-") as folder:
        db = str(Path(folder) / "timers.db")
        _child("scaling.py", "timers-make", db, "100000")
        started = median("timers-start", db)
    goal("engine start < 0.2 s", f"{started['start_s']:.2f} s", started["start_s"] < 0.2)
    goal("RSS < 60 MiB", f"{started['rss_mb']:.0f} MiB", started["rss_mb"] < 60)
    goal("longest loop stall while starting < 20 ms", f"{started['stall_max_ms']:.0f} ms",
         started["stall_max_ms"] < 20)  # fmt: skip

    print("\nThe app's 1 ms ticker (lateness):")
    ticking = median("ticker-w4")
    goal("while W4 runs (1 000 at once), p99 <= 20 ms",
         f"p50 {ticking['p50_ms']:.1f} / p99 {ticking['p99_ms']:.1f} / max {ticking['max_ms']:.0f} ms"
         f" (longest collection {ticking['gc_max_ms']:.0f} ms)",
         ticking["p99_ms"] <= 20)  # fmt: skip
    goal("... and W4 still >= 10 000 nodes/s", f"{ticking['nodes_per_second']:.0f}",
         ticking["nodes_per_second"] >= 10_000)  # fmt: skip
    resumed = median("ticker-resume")
    goal("while 1 000 waiting executions are resumed, max <= 20 ms",
         f"max {resumed['max_ms']:.0f} ms (p99 {resumed['p99_ms']:.1f}; longest collection "
         f"{resumed['gc_max_ms']:.0f} ms)", resumed["max_ms"] <= 20)  # fmt: skip
    for size, label in (("1000000", "1 MB"), ("10000000", "10 MB")):
        big = median("outputs", size)
        goal(f"a 10-node chain passing {label} outputs, max <= 20 ms", f"{big['max_ms']:.0f} ms",
             big["max_ms"] <= 20)  # fmt: skip

    print("\nDisk per execution (10 nodes, VACUUMed):")
    small, large = (median("disk", size)["bytes_per_execution"] for size in ("512", "900"))
    extra, payload = large - small, 10 * (900 - 512)
    goal(
        "388 more bytes in each of 10 outputs cost at most twice that on disk (no step at the "
        "page size)",
        f"{small / 1000:.1f} -> {large / 1000:.1f} KB ({extra / payload:.1f}x the payload)",
        extra <= 2 * payload,
    )
    met = sum(1 for _, _, ok in goals if ok)
    print(f"\nGoals (issue 17): {met} of {len(goals)} met")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), action="append")
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions (less stable figures)"
    )
    parser.add_argument(
        "--only", choices=("memory", "durable", "scaling"), help="run one part only"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip LangGraph and DBOS even when installed"
    )
    options = parser.parse_args()
    backends = options.backend or ["asyncio", "trio"]
    rounds = 5 if options.quick else 30
    print(
        f"prana {prana.__version__} on Python {platform.python_version()}, {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores\n"
    )
    if options.only == "scaling":
        print(
            "How cost grows with the work (asyncio, SQLite NORMAL, each role in its own process):"
        )
        print_scaling(repeats=1 if options.quick else 3)
        return
    if options.only != "durable":
        print(
            f"In memory: {rounds * 10} runs of each workload in {rounds} interleaved rounds; medians\n"
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
        print(
            "\nGoals (issue 2): per-node overhead at most 2x the floor on asyncio; W1 under 8 ms.\n"
        )
    if options.only != "memory":
        print("Durable, on SQLite, each workload in its own process (asyncio):")
        print_durable(peers=not options.no_peers)


if __name__ == "__main__":
    main()
