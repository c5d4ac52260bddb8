"""The daemon under load (issue 19): a real ``prana serve`` process on loopback, and
HTTP clients in this process, each on one kept-alive connection.

    python bench/serve.py [--clients 50] [--seconds 10] [--backend asyncio] [--processes 1]
    python bench/serve.py --engine-figures    # W2, W4, W5 with and without the app beside them

Figures, each printed next to its goal, and as JSON on the last line:

* webhook-started 10-node executions per second, sustained: the clients post to a
  webhook for ``--seconds``; the rate counts the executions that completed, until
  the last one did; and p50 and p99 of each one's time from its request to its
  completion (the execution's ``finished_at``, read from the API's list after);
* request to completion of API starts that wait for it, p50 and p99: the clients
  start executions with ``?wait=`` (the answer comes when the execution has
  completed), each the next as soon as its previous one is answered (closed loop:
  at most 50 in flight, so the p50 is about 50 / the rate), and then at fixed
  offered rates (``--rates``, open loop: what a request waits at that load,
  counted from when it was due);
* webhook-started executions at the same offered rates (open loop): each one's
  time from when its request was due to its completion;
* resumes by token per second: executions waiting for data, answered by the clients;
* 1 000 event streams, one per waiting execution: how long they take to open, and
  how long after the answers begin every stream has seen its execution's end.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import h11
import orjson

NODES = 10


def workflow(trigger: dict[str, Any], id: str, wait: bool = False) -> str:
    nodes = [{"key": "start", **trigger}]
    nodes += [{"key": f"n{i}", "type": "core.noop"} for i in range(1, NODES)]
    if wait:
        nodes.insert(1, {"key": "ask", "type": "wait.webhook"})
    keys = [node["key"] for node in nodes]
    connections = [{"from": a, "to": b} for a, b in itertools.pairwise(keys)]
    return json.dumps({"id": id, "version": 1, "nodes": nodes, "connections": connections})


class Connection:
    """One kept-alive HTTP/1.1 connection."""

    def __init__(self, stream: anyio.abc.ByteStream, host: str) -> None:
        self._stream = stream
        self._host = host
        self._h11 = h11.Connection(h11.CLIENT)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = b"" if body is None else orjson.dumps(body)
        headers = [("host", self._host), ("content-length", str(len(data)))]
        if body is not None:
            headers.append(("content-type", "application/json"))
        message = h11.Request(method=method, target=path, headers=headers)
        await self._stream.send(
            self._h11.send(message) + self._h11.send(h11.Data(data=data))
            + self._h11.send(h11.EndOfMessage())
        )  # fmt: skip
        status, chunks = 0, []
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(await self._stream.receive())
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._h11.start_next_cycle()
                return status, b"".join(chunks)


def p50_p99(latencies: list[float]) -> tuple[float, float]:
    """The median and 99th percentile, in ms, of ``latencies`` (seconds, sorted)."""
    return latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000


async def connect(url: str) -> Connection:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await anyio.connect_tcp(parts.hostname, parts.port)
    return Connection(stream, parts.netloc)


async def webhook_rate(url: str, clients: int, seconds: float) -> dict[str, float]:
    """Executions started by webhooks for ``seconds`` (each client posts its next
    once its last was answered: 202, started), per second until the last completed;
    and each one's time from its request to its completion (its ``finished_at``, by
    the same clock as the request's moment)."""
    sent = 0
    requested: dict[str, float] = {}  # execution id -> when its request went out
    began = time.perf_counter()
    end = began + seconds

    async def client() -> None:
        nonlocal sent
        connection = await connect(url)
        while time.perf_counter() < end:
            at = time.time()
            status, body = await connection.request("POST", "/hooks/bench", {"n": sent})
            assert status == 202, status
            requested[orjson.loads(body)["execution_id"]] = at
            sent += 1

    async with anyio.create_task_group() as group:
        for _ in range(clients):
            group.start_soon(client)
    # Until every execution started has completed.
    connection = await connect(url)
    while True:
        _, body = await connection.request("GET", "/metrics")
        completed = _metric(body, 'prana_executions{status="completed"}')
        if completed >= sent:
            break
        await anyio.sleep(0.01)
    elapsed = time.perf_counter() - began
    latencies = sorted(
        finished - requested[execution_id]
        for execution_id, finished in (await finished_at(connection, "bench")).items()
        if execution_id in requested
    )
    assert len(latencies) == sent, (len(latencies), sent)
    p50, p99 = p50_p99(latencies)
    return {
        "webhook_per_second": sent / elapsed,
        "webhook_started": sent,
        "webhook_p50_ms": p50,
        "webhook_p99_ms": p99,
    }


async def webhooks_at_rate(url: str, clients: int, seconds: float, rate: float) -> dict[str, float]:
    """Webhook-started executions at a fixed offered rate (open loop, as
    :func:`latency_at_rate`): each one's time from when its request was due to its
    completion (its ``finished_at``), and how many completed per second."""
    requested: dict[str, float] = {}  # execution id -> when its request was due
    total = int(seconds * rate)
    began = time.perf_counter() + 0.1
    began_at = time.time() + 0.1  # the same moment, by the clock of finished_at

    async def client(first: int) -> None:
        connection = await connect(url)
        for k in range(first, total, clients):
            await anyio.sleep(max(0.0, began + k / rate - time.perf_counter()))
            status, body = await connection.request("POST", "/hooks/bench", {"n": k})
            assert status == 202, status
            requested[orjson.loads(body)["execution_id"]] = began_at + k / rate

    async with anyio.create_task_group() as group:
        for first in range(clients):
            group.start_soon(client, first)
    connection = await connect(url)
    while True:  # until every one of them has completed
        finished = await finished_at(connection, "bench")
        ours = [(finished.get(id_), due) for id_, due in requested.items()]
        if all(at is not None for at, _ in ours):
            break
        await anyio.sleep(0.1)
    latencies = sorted(at - due for at, due in ours)
    last = max(at for at, _ in ours)
    p50, p99 = p50_p99(latencies)
    return {
        "offered_per_second": rate,
        "completed_per_second": total / (last - began_at),
        "hook_p50_ms": p50,
        "hook_p99_ms": p99,
    }


async def finished_at(connection: Connection, workflow: str) -> dict[str, float]:
    """When each execution of ``workflow`` finished, by the API's list, page by page."""
    found: dict[str, float] = {}
    cursor = ""
    while True:
        status, body = await connection.request(
            "GET", f"/api/executions?workflow={workflow}&limit=1000{cursor}"
        )
        assert status == 200, (status, body)
        page = orjson.loads(body)
        found |= {e["id"]: e["finished_at"] for e in page["executions"]}
        if page["next_cursor"] is None:
            return found
        cursor = f"&cursor={page['next_cursor']}"


async def completion_latency(url: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def client() -> None:
        connection = await connect(url)
        while time.perf_counter() < end:
            started = time.perf_counter()
            status, body = await connection.request(
                "POST", "/api/workflows/bench_api/executions?wait=30", {"n": 1}
            )
            assert status == 201, (status, body)
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(clients):
            group.start_soon(client)
    latencies.sort()
    p50, p99 = p50_p99(latencies)
    return {
        "waited_per_second": len(latencies) / (time.perf_counter() - began),
        "p50_ms": p50,
        "p99_ms": p99,
    }


async def latency_at_rate(url: str, clients: int, seconds: float, rate: float) -> dict[str, float]:
    """Request to completion at a fixed offered rate (open loop): request ``k`` is
    due at ``k / rate`` seconds and goes out on connection ``k % clients`` (at once
    if that connection is still busy); its latency counts from when it was due, so
    a slow answer delays the requests behind it and they count it too."""
    latencies: list[float] = []
    total = int(seconds * rate)
    began = time.perf_counter() + 0.1

    async def client(first: int) -> None:
        connection = await connect(url)
        for k in range(first, total, clients):
            due = began + k / rate
            await anyio.sleep(max(0.0, due - time.perf_counter()))
            status, body = await connection.request(
                "POST", "/api/workflows/bench_api/executions?wait=30", {"n": k}
            )
            assert status == 201, (status, body)
            latencies.append(time.perf_counter() - due)

    async with anyio.create_task_group() as group:
        for first in range(clients):
            group.start_soon(client, first)
    elapsed = time.perf_counter() - began
    latencies.sort()
    p50, p99 = p50_p99(latencies)
    return {
        "offered_per_second": rate,
        "answered_per_second": total / elapsed,
        "rate_p50_ms": p50,
        "rate_p99_ms": p99,
    }


async def resume_rate(url: str, clients: int, count: int) -> dict[str, float]:
    tokens: list[str] = []

    async def starter(share: int) -> None:
        connection = await connect(url)
        for _ in range(share):
            _, body = await connection.request(
                "POST", "/api/workflows/bench_wait/executions?wait=30", {"n": 1}
            )
            tokens.append(orjson.loads(body)["suspensions"][0]["token"])

    async with anyio.create_task_group() as group:
        for _ in range(clients):
            group.start_soon(starter, count // clients)
    began = time.perf_counter()

    async def answerer(mine: list[str]) -> None:
        connection = await connect(url)
        for token in mine:
            status, body = await connection.request("POST", f"/api/resume/{token}", {"ok": True})
            assert status == 200, (status, body)

    async with anyio.create_task_group() as group:
        for index in range(clients):
            group.start_soon(answerer, tokens[index::clients])
    return {"resumes_per_second": len(tokens) / (time.perf_counter() - began)}


def _metric(page: bytes, name: str) -> float:
    for line in page.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def start_daemon(
    folder: Path, backend: str, processes: int = 1
) -> tuple[subprocess.Popen[str], str]:
    for name, text in (
        ("hook.json", workflow({"type": "webhook.trigger", "params": {"path": "bench"}}, "bench")),
        ("api.json", workflow({"type": "manual.trigger"}, "bench_api")),
        ("wait.json", workflow({"type": "manual.trigger"}, "bench_wait", wait=True)),
    ):
        (folder / name).write_text(text)
    return spawn_daemon(
        folder / "bench.db", folder, "--backend", backend, "--processes", str(processes)
    )


def spawn_daemon(db: Path, workflows: Path, *options: str) -> tuple[subprocess.Popen[str], str]:
    """A ``prana serve`` process over ``db`` serving the workflows in the folder
    ``workflows``, on a free loopback port, without tokens; and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "prana", "serve", "--db", str(db), "--workflows",
         str(workflows), "--port", "0", *options],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PRANA_TOKENS": ""},
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if "serving at " in line:
            return process, line.split("serving at ")[1].strip()
    raise RuntimeError(f"the daemon did not start ({process.wait()})")


async def streams(url: str, clients: int, count: int) -> dict[str, float]:
    """``count`` executions wait; one event stream each is opened; all are answered:
    seconds until every stream has seen its execution's end."""
    tokens: dict[str, str] = {}

    async def starter(share: int) -> None:
        connection = await connect(url)
        for _ in range(share):
            _, body = await connection.request(
                "POST", "/api/workflows/bench_wait/executions?wait=30", {"n": 1}
            )
            execution = orjson.loads(body)
            tokens[execution["id"]] = execution["suspensions"][0]["token"]

    async with anyio.create_task_group() as group:
        for _ in range(clients):
            group.start_soon(starter, count // clients)
    opened, ended = 0, 0
    all_open = anyio.Event()

    async def stream(execution_id: str) -> None:
        nonlocal opened, ended
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        async with await anyio.connect_tcp(parts.hostname, parts.port) as sock:
            request = (
                f"GET /api/executions/{execution_id}/events HTTP/1.1\r\n"
                f"host: {parts.netloc}\r\nconnection: close\r\n\r\n"
            )
            await sock.send(request.encode())
            seen, counted = b"", False
            while b"event: ExecutionCompleted" not in seen:
                try:
                    seen = seen[-200:] + await sock.receive()
                except anyio.EndOfStream:
                    break
                if not counted and b"event: snapshot" in seen:
                    counted = True
                    opened += 1
                    if opened == len(tokens):
                        all_open.set()
        ended += 1

    began = time.perf_counter()
    async with anyio.create_task_group() as group:
        for execution_id in tokens:
            group.start_soon(stream, execution_id)
        await all_open.wait()
        opening = time.perf_counter() - began
        answered = time.perf_counter()

        async def answerer(mine: list[str]) -> None:
            connection = await connect(url)
            for token in mine:
                await connection.request("POST", f"/api/resume/{token}", {"ok": True})

        values = list(tokens.values())
        for index in range(clients):
            group.start_soon(answerer, values[index::clients])
    return {
        "streams": float(ended),
        "streams_open_s": opening,
        "streams_to_end_s": time.perf_counter() - answered,
    }


async def measure(url: str, clients: int, seconds: float, rates: list[float]) -> dict[str, Any]:
    figures: dict[str, Any] = await webhook_rate(url, clients, seconds)
    figures |= await completion_latency(url, clients, seconds)
    figures["at_rates"] = [await latency_at_rate(url, clients, seconds, rate) for rate in rates]
    figures["hooks_at_rates"] = [
        await webhooks_at_rate(url, clients, seconds, rate) for rate in rates
    ]
    figures |= await resume_rate(url, clients, 1000)
    figures |= await streams(url, clients, 1000)
    return figures


@contextlib.asynccontextmanager
async def app_beside(engine: Any, served: bool) -> AsyncIterator[None]:
    """The daemon's app served for ``engine`` in this process, on a loopback port,
    while inside (nothing if not ``served``)."""
    if not served:
        yield
        return
    import socket

    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from prana.server import create_app

    listener = socket.create_server(("127.0.0.1", 0))
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(
            lambda: hypercorn_serve(create_app(engine), config, shutdown_trigger=stop.wait)
        )
        try:
            yield
        finally:
            stop.set()


async def beside_a_server(workload: str, served: bool) -> float:
    """One engine figure in this process (durable, SQLite), with the daemon's app
    served beside the engine or not: ``w2``, ms of a 100-node chain run alone (the
    median of 30); ``w4``, node executions per second of 1 000 10-node chains at once;
    ``w5``, seconds for 1 000 executions to reach their wait and then, resumed, to
    end."""
    from durable import resume_all, suspending_chain
    from durable import run_all as run_each
    from scaling import run_all
    from workloads import ACTIONS, chain_workflow

    import prana

    with tempfile.TemporaryDirectory() as folder:
        async with (
            prana.Engine(store=f"sqlite:///{folder}/e.db", actions=ACTIONS, env={}) as engine,
            app_beside(engine, served),
        ):
            if workload == "w2":
                chain = chain_workflow(100)
                times = []
                for _ in range(35):
                    started = time.perf_counter()
                    result = await engine.run(chain)
                    times.append((time.perf_counter() - started) * 1000)
                    assert result.status == "completed"
                return statistics.median(times[5:])
            if workload == "w4":
                workflow = chain_workflow(9)
                await engine.run(workflow)
                started = time.perf_counter()
                results = await run_all(engine, workflow, 1000)
                elapsed = time.perf_counter() - started
                assert all(result.status == "completed" for result in results)
                return 1000 * NODES / elapsed
            workflow = suspending_chain()
            started = time.perf_counter()
            waiting = await run_each(engine, workflow, 1000)
            assert all(execution.status == "suspended" for execution in waiting)
            ended = await resume_all(engine, [execution.id for execution in waiting])
            assert all(execution.status == "completed" for execution in ended)
            return time.perf_counter() - started


# Each engine figure: its name, unit, and whether more is better.
ENGINE_FIGURES = (
    ("w2", "W2 ms per 100-node chain", False),
    ("w4", "W4 nodes/s", True),
    ("w5", "W5 s to suspend and resume 1 000", False),
)


def engine_figures(rounds: int = 5) -> None:
    """W2, W4 and W5 with and without the daemon's app in the process, interleaved."""
    for workload, name, more_is_better in ENGINE_FIGURES:
        alone, beside = [], []
        for _ in range(rounds):
            alone.append(anyio.run(beside_a_server, workload, False))
            beside.append(anyio.run(beside_a_server, workload, True))
        ratio = statistics.median(beside) / statistics.median(alone)
        met = ratio >= 0.95 if more_is_better else ratio <= 1.05
        print(f"{name}, engine alone: {', '.join(f'{f:.4g}' for f in alone)}")
        print(f"{name}, the daemon's app served beside it: {', '.join(f'{f:.4g}' for f in beside)}")
        print(f"  {'met    ' if met else 'not met'}  {workload.upper()} unchanged with the server "
              f"in the process (median within 5%): beside / alone {ratio:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument(
        "--processes", type=int, default=1, help="prana serve --processes: daemons on the port"
    )
    parser.add_argument(
        "--rates",
        default="500,1000",
        help="offered rates (requests/s, comma-separated) for the open-loop latency",
    )
    parser.add_argument(
        "--engine-figures",
        action="store_true",
        help="only W2, W4 and W5 with and without the daemon's app in the process (asyncio)",
    )
    options = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if options.engine_figures:
        engine_figures()
        return
    # How fast the machine is now: W4 in this process (a shared machine's speed
    # drifts, by half and more within minutes).
    calibration = [anyio.run(beside_a_server, "w4", False)]
    with tempfile.TemporaryDirectory() as folder:
        daemon, url = start_daemon(Path(folder), options.backend, options.processes)
        try:
            rates = [float(rate) for rate in options.rates.split(",") if rate]
            figures = anyio.run(measure, url, options.clients, options.seconds, rates)
        finally:
            daemon.terminate()
            daemon.communicate(timeout=30)
    calibration.append(anyio.run(beside_a_server, "w4", False))
    print(
        f"{options.processes} daemon process(es) on {options.backend}, {options.clients} "
        f"clients, {NODES}-node workflows; the machine's speed before / after: W4 "
        f"{calibration[0]:.0f} / {calibration[1]:.0f} nodes/s (engine alone, durable)"
    )
    rate = figures["webhook_per_second"]
    print(f"  {'met    ' if rate >= 1000 else 'not met'}  webhook-started executions/s "
          f">= 1 000: {rate:.0f}")  # fmt: skip
    p99 = figures["webhook_p99_ms"]
    print(f"  {'met    ' if p99 < 50 else 'not met'}  ... each from its request to its "
          f"completion, p99 < 50 ms: {p99:.1f} ms (p50 {figures['webhook_p50_ms']:.1f} ms)")  # fmt: skip
    p99 = figures["p99_ms"]
    print(f"  {'met    ' if p99 < 50 else 'not met'}  API starts that wait for the outcome "
          f"(?wait=, closed loop) p99 < 50 ms: "
          f"{p99:.1f} ms (p50 {figures['p50_ms']:.1f} ms, {figures['waited_per_second']:.0f}/s)")  # fmt: skip
    for at in figures["at_rates"]:
        rate, p99 = at["offered_per_second"], at["rate_p99_ms"]
        met = at["answered_per_second"] >= 0.98 * rate and p99 < 50
        mark = "       " if rate < 1000 else "met    " if met else "not met"
        print(f"  {mark}  at {rate:.0f} requests/s offered (open loop): p99 {p99:.1f} ms "
              f"(p50 {at['rate_p50_ms']:.1f} ms), {at['answered_per_second']:.0f}/s answered")  # fmt: skip
    for at in figures["hooks_at_rates"]:
        rate, p99 = at["offered_per_second"], at["hook_p99_ms"]
        met = at["completed_per_second"] >= 0.98 * rate and p99 < 50
        mark = "       " if rate < 1000 else "met    " if met else "not met"
        print(f"  {mark}  webhooks at {rate:.0f}/s offered (open loop), request to completion: "
              f"p99 {p99:.1f} ms (p50 {at['hook_p50_ms']:.1f} ms), "
              f"{at['completed_per_second']:.0f}/s completed")  # fmt: skip
    print(f"           resumes by token/s: {figures['resumes_per_second']:.0f}")
    print(f"           {figures['streams']:.0f} event streams, one per waiting execution: "
          f"open in {figures['streams_open_s']:.2f} s; all ended "
          f"{figures['streams_to_end_s']:.2f} s after the answers began")  # fmt: skip
    print(json.dumps({**figures, "w4_before_after": calibration}))


if __name__ == "__main__":
    main()
