"""The web view's two goals (issue 20), against a real ``prana serve`` process.

    python bench/ui.py [--executions 100000] [--repeat 20]

* a 1 000-node workflow's graph renders in under 1 s: the layout and SVG alone (in
  this process), and the whole page over HTTP, for a chain of 1 000 nodes and for a
  wide graph (ten branches of a hundred nodes joined by merges, with IF nodes); and
  the page of a run of the 1 000-node chain (every node completed);
* the runs page answers in under 200 ms with ``--executions`` in the store: the first
  page, a page filtered by status (one that every run has, one that none has), one
  filtered by workflow, and the tenth page on; and the workflows page, which counts
  each workflow's runs by status.

Each figure is the median and the slowest of ``--repeat`` requests, next to its goal;
the last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import anyio

import prana
from prana.server._layout import layout
from prana.server._svg import graph_svg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import spawn_daemon


def chain(n: int) -> dict[str, Any]:
    nodes = [{"key": "start", "type": "manual.trigger"}]
    nodes += [{"key": f"n{i}", "type": "core.noop"} for i in range(1, n)]
    keys = [node["key"] for node in nodes]
    connections = [{"from": a, "to": b} for a, b in itertools.pairwise(keys)]
    return {"id": f"chain{n}", "nodes": nodes, "connections": connections}


def wide(branches: int = 10, depth: int = 99) -> dict[str, Any]:
    """A trigger, ``branches`` chains of ``depth`` nodes (every tenth an IF whose two
    ports lead on), all joined by one merge: 1 + branches * depth + 1 nodes."""
    nodes: list[dict[str, Any]] = [{"key": "start", "type": "manual.trigger"}]
    connections: list[dict[str, Any]] = []
    ends = []
    for b in range(branches):
        last, port = "start", "main"
        for d in range(depth):
            key = f"b{b}_{d}"
            if d % 10 == 5:
                nodes.append(
                    {"key": key, "type": "logic.if", "params": {"condition": "{{ true }}"}}
                )
            else:
                nodes.append({"key": key, "type": "core.noop"})
            connections.append({"from": last, "to": key, "from_port": port})
            last, port = key, ("true" if d % 10 == 5 else "main")
        ends.append((last, port))
    nodes.append({"key": "join", "type": "core.noop"})
    connections += [{"from": key, "to": "join", "from_port": port} for key, port in ends]
    return {"id": "wide", "nodes": nodes, "connections": connections}


def timed(function: Any, repeat: int) -> tuple[float, float]:
    """Median and slowest of ``repeat`` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), max(times)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url) as reply:
        assert reply.status == 200, (url, reply.status)
        return bytes(reply.read())


async def fill(db: Path, executions: int, workflows: list[dict[str, Any]]) -> str:
    """``executions`` runs of a one-node workflow, and one of the 1 000-node chain
    (whose id is returned)."""
    one = prana.load_workflow(
        {"id": "one", "nodes": [{"key": "start", "type": "manual.trigger"}], "connections": []}
    )
    async with prana.Engine(store=f"sqlite:///{db}", durability="off") as engine:
        big = await engine.run(prana.load_workflow(workflows[0]))
        for n in range(executions):
            await engine.start(one, n)
        await engine.wait_idle()
    return big.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    figures: dict[str, float] = {}
    shapes = {"chain of 1 000": chain(1000), "wide 1 000": wide()}
    print("a 1 000-node workflow's graph, goal < 1 s (median / slowest)")
    for name, definition in shapes.items():
        workflow = prana.load_workflow(definition)
        median, slowest = timed(lambda w=workflow: graph_svg(layout(w)), options.repeat)
        figures[f"svg {name}"] = slowest
        mark = "met    " if slowest < 1000 else "not met"
        print(f"  {mark}  layout + SVG, {name}: {median:.0f} / {slowest:.0f} ms")
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        (folder / "flows").mkdir()
        for definition in shapes.values():
            (folder / "flows" / f"{definition['id']}.json").write_text(json.dumps(definition))
        began = time.perf_counter()
        big = anyio.run(fill, folder / "bench.db", options.executions, list(shapes.values()))
        print(f"  ({options.executions} executions stored in {time.perf_counter() - began:.0f} s)")
        daemon, url = spawn_daemon(folder / "bench.db", folder / "flows")
        try:
            pages = {
                "workflow page, chain of 1 000": f"{url}/ui/workflows/chain1000",
                "workflow page, wide 1 000": f"{url}/ui/workflows/wide",
                "run page, chain of 1 000 completed": f"{url}/ui/runs/{big}",
            }
            for name, address in pages.items():
                median, slowest = timed(lambda a=address: fetch(a), options.repeat)
                figures[name] = slowest
                mark = "met    " if slowest < 1000 else "not met"
                print(f"  {mark}  {name}: {median:.0f} / {slowest:.0f} ms")
            print(f"the runs page with {options.executions} executions, goal < 200 ms")
            tenth = f"{url}/ui/runs"
            for _ in range(9):
                found = re.search(r'<a href="(/ui/runs\?[^"]+)" rel="next">', fetch(tenth).decode())
                assert found is not None
                tenth = url + found.group(1).replace("&amp;", "&")
            runs = {
                "first page": f"{url}/ui/runs",
                "status=completed": f"{url}/ui/runs?status=completed",
                "status=failed (none)": f"{url}/ui/runs?status=failed",
                "workflow=one": f"{url}/ui/runs?workflow=one",
                "tenth page": tenth,
                "workflows page (counts by status)": f"{url}/ui/workflows",
            }
            for name, address in runs.items():
                median, slowest = timed(lambda a=address: fetch(a), options.repeat)
                figures[f"runs {name}"] = slowest
                mark = "met    " if slowest < 200 else "not met"
                print(f"  {mark}  {name}: {median:.1f} / {slowest:.1f} ms")
        finally:
            daemon.terminate()
            daemon.communicate(timeout=30)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
