"""The PostgreSQL store as a user meets it: URLs, the databases it refuses, many
processes opening a new database at once, and an engine that stops and starts again
over it (the contract every store keeps is in test_stores.py)."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

import prana
from prana.storage import PostgresStore
from prana.storage._postgres_schema import LATEST, parse_url
from tests import postgres

WAITING = {
    "id": "approve",
    "nodes": [
        {"key": "start", "type": "manual.trigger"},
        {"key": "ask", "type": "wait.webhook"},
        {"key": "done", "type": "data.set", "params": {"values": {"by": "{{ input.by }}"}}},
    ],
    "connections": [{"from": "start", "to": "ask"}, {"from": "ask", "to": "done"}],
}


def sql(url: str, *statements: str) -> list[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        rows: list[Any] = []
        for statement in statements:
            cursor = db.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
        return rows


async def test_urls_say_what_is_wrong_with_them() -> None:
    for bad, message in [
        ("postgresql://u@h/db?schema=my-schema", "schema must be a plain name"),
        ("postgresql://u@h/db?pool=0", "pool must be a whole number from 1 to 100"),
        ("mysql://u@h/db", "not a PostgreSQL store URL"),
    ]:
        with pytest.raises(prana.StoreError, match=message):
            PostgresStore(bad)
    store = prana.storage.open_store("postgresql://u@h/db?schema=flows&pool=4")
    assert isinstance(store, PostgresStore)
    assert (store.schema, store.pool_size) == ("flows", 4)


def test_connections_give_up_on_a_silent_server_in_seconds_unless_the_url_says_otherwise() -> None:
    import psycopg

    # What libpq is given: prana's defaults beside the URL's own options, which win.
    conninfo, _, _ = parse_url(
        "postgresql://u@h/db?schema=flows&sslmode=require&keepalives_idle=60"
    )
    given = psycopg.conninfo.conninfo_to_dict(conninfo)
    assert given == {
        "user": "u",
        "host": "h",
        "dbname": "db",
        "sslmode": "require",
        "connect_timeout": "10",
        "keepalives": "1",
        "keepalives_idle": "60",
        "keepalives_interval": "5",
        "keepalives_count": "3",
        "tcp_user_timeout": "30000",
    }
    # libpq knows every one of them (it refuses a connection string with a name it
    # does not know), and a connection keeps them.
    postgres.require()
    conninfo, _, _ = parse_url(postgres.database())
    with psycopg.connect(conninfo) as db:
        settings = db.info.get_parameters()
    assert (settings["keepalives_count"], settings["tcp_user_timeout"]) == ("3", "30000")


async def test_an_unreachable_server_is_a_clear_error() -> None:
    postgres.require()
    url = "postgresql://prana@/prana?host=/nonexistent-folder&connect_timeout=1"
    with pytest.raises(prana.StoreError, match="cannot connect to PostgreSQL"):
        async with prana.Engine(store=url):
            pass


async def test_a_schema_of_another_programs_tables_is_refused_and_left_alone() -> None:
    url = postgres.database()
    sql(url, "CREATE SCHEMA prana", "CREATE TABLE prana.customers (name TEXT)")
    with pytest.raises(prana.StoreError, match=r"another program's tables \(customers\)"):
        async with prana.Engine(store=url):
            pass
    tables = sql(
        url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'prana'"
    )
    assert tables == [("customers",)]
    # In a schema of its own, on the same database, it starts.
    async with prana.Engine(store=url + "&schema=flows") as engine:
        done = await engine.run(prana.load_workflow(WAITING))
    assert done.status == "suspended"


async def test_a_newer_schema_is_refused() -> None:
    url = postgres.database()
    async with prana.Engine(store=url):
        pass
    sql(url, "UPDATE prana.prana_schema SET version = 99")
    with pytest.raises(prana.StoreError, match="schema version 99, newer than this prana"):
        async with prana.Engine(store=url):
            pass


async def test_many_stores_open_a_new_database_at_once() -> None:
    url = postgres.database()
    stores = [PostgresStore(url) for _ in range(6)]
    async with anyio.create_task_group() as group:
        for store in stores:
            group.start_soon(store.open)
    for store in stores:
        await store.aclose()
    assert sql(url, "SELECT version FROM prana.prana_schema") == [(LATEST,)]


async def test_a_store_hears_what_other_processes_queue_and_request() -> None:
    from prana._records import Checkpoint, QueuePlace

    url = postgres.database()
    heard: list[str] = []
    news = anyio.Event()

    def hear(topic: str) -> None:
        heard.append(topic)
        news.set()

    listening, telling = PostgresStore(url), PostgresStore(url)
    await listening.open()
    await telling.open()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(listening.listen, hear)
            queued = Checkpoint(
                execution_id="q1",
                kind="start",
                workflow_id="w",
                workflow_version=1,
                workflow_hash="h1",
                status="queued",
                trigger="start",
                queue=QueuePlace(key="ann"),
            )
            with anyio.fail_after(10):
                attempt = 0
                while len(heard) < 2:  # LISTEN is set up on its own thread: tell until heard
                    attempt += 1
                    one = attrs.evolve(queued, execution_id=f"q{attempt}")
                    await telling.commit([one], owner="a", lease_expires=9e9, now=1.0)
                    with anyio.move_on_after(0.2):
                        await news.wait()
            assert heard[:2] == ["listening", "queue"]
            heard.clear()
            news = anyio.Event()
            running = attrs.evolve(queued, execution_id="r1", status="running", queue=None)
            await telling.commit([running], owner="a", lease_expires=9e9, now=1.0)
            assert await telling.request_control("r1", {"action": "cancel"})
            with anyio.fail_after(10):
                while "control" not in heard:  # a late "queue" may come first
                    await news.wait()
                    news = anyio.Event()
            group.cancel_scope.cancel()
    finally:
        await listening.aclose()
        await telling.aclose()
    assert "control" in heard


async def test_engines_on_postgres_are_told_of_queued_work_and_requests_at_once() -> None:
    # They would look only every 10 minutes by themselves (poll=600).
    url = postgres.database()
    gate, ran, two_started = anyio.Event(), [], anyio.Event()

    def registry(name: str) -> prana.ActionRegistry:
        actions = prana.ActionRegistry()

        @actions.action("test.gated")
        async def gated(ctx: prana.NodeContext) -> Any:
            ran.append(f"{name}:{ctx.input['job']}")
            if len(ran) == 2:
                two_started.set()
            await gate.wait()
            return ctx.input

        return actions

    gated = {
        "id": "gated",
        "nodes": [{"key": "start", "type": "manual.trigger"}, {"key": "w", "type": "test.gated"}],
        "connections": [{"from": "start", "to": "w"}],
    }
    async with (
        prana.Engine(store=url, actions=registry("full"), max_running=1, poll=600) as full,
        prana.Engine(store=url, actions=registry("roomy"), poll=600) as roomy,
    ):
        first = await full.start(gated, {"job": 1})
        second = await full.start(gated, {"job": 2})  # full: queued, and roomy is told
        with anyio.fail_after(10):
            await two_started.wait()
            # A cancel through the full engine reaches the roomy one at once too.
            cancelled = await full.cancel(second.id, "not needed")
            gate.set()
            done = await first.result()
    assert ran == ["full:1", "roomy:2"]
    assert cancelled.status == "cancelled"
    assert done.status == "completed"
    assert roomy.health().service("notifications").state == "running"


async def test_an_execution_waits_across_engines_and_finishes_once() -> None:
    url = postgres.database()
    workflow = prana.load_workflow(WAITING)
    async with prana.Engine(store=url) as engine:
        waiting = await engine.run(workflow, {"amount": 5})
    (token,) = [s.token for s in waiting.suspensions]
    assert token is not None
    async with prana.Engine(store=url) as engine:  # another engine, later
        listed = await engine.list_executions(status="suspended")
        resumed = await engine.resume_token(token, {"by": "ann"})
        finished = await engine.wait(resumed.id, until=lambda e: e.finished)
    assert [e.id for e in listed] == [waiting.id]
    assert finished.status == "completed"
    assert finished.output == {"by": "ann"}
    assert [run.node_key for run in finished.node_runs] == ["start", "ask", "done"]
    assert finished.input == {"amount": 5}


def test_serve_check_looks_at_a_postgres_database_without_changing_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from prana.actors._cli import main

    url = postgres.database()
    fresh = main(["serve", "--db", url, "--check"])
    _, said = capsys.readouterr()
    untouched = sql(url, "SELECT count(*) FROM pg_namespace WHERE nspname = 'prana'")
    sql(url, "CREATE SCHEMA prana", "CREATE TABLE prana.customers (name TEXT)")
    refused = main(["serve", "--db", url, "--check"])
    _, refusal = capsys.readouterr()
    assert fresh == 0
    assert "has no prana tables in schema 'prana' yet: they are created on start" in said
    assert "the configuration is valid" in said
    assert untouched == [(0,)]
    assert refused == 1
    assert "holds another program's tables (customers)" in refusal


async def test_the_daemon_serves_executions_kept_in_postgres() -> None:
    from tests.server.client import request
    from tests.server.conftest import daemon, example, start_waiting

    url = postgres.database()
    async with daemon(url, [example("approval.yaml")]) as address:
        waiting = await start_waiting(address)
        (token,) = [s["token"] for s in waiting["suspensions"]]
    async with daemon(url, [example("approval.yaml")]) as address:  # restarted
        answered = await request(address, "POST", f"/api/resume/{token}", {"approved": True})
        listed = (await request(address, "GET", "/api/executions?status=completed")).json()
        page = (await request(address, "GET", f"/ui/runs/{waiting['id']}")).body.decode()
    assert answered.json()["status"] == "completed"
    assert [e["id"] for e in listed["executions"]] == [waiting["id"]]
    assert 'data-key="pay" data-state="completed"' in page


def test_the_cli_runs_lists_and_shows_executions_kept_in_postgres(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from prana.actors._cli import main

    url = postgres.database()
    flow = tmp_path / "approve.json"
    flow.write_text(__import__("json").dumps(WAITING))
    ran = main(["run", str(flow), "--db", url, "--input", '{"amount": 3}'])
    _, ran_err = capsys.readouterr()
    listed = main(["list", "--db", url, "--status", "suspended"])
    list_out, _ = capsys.readouterr()
    assert ran == 0, ran_err
    assert listed == 0
    assert "PostgresStore(" in ran_err  # it says which store it used
    (execution_id,) = [line.split()[0] for line in list_out.splitlines()[1:] if line.strip()]
    shown = main(["show", execution_id, "--db", url])
    show_out, _ = capsys.readouterr()
    assert shown == 0
    assert "suspended" in show_out
    assert "ask" in show_out


def test_reading_commands_change_nothing_in_a_database_prana_never_used(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from prana.actors._cli import main

    url = postgres.database()
    code = main(["list", "--db", url])
    _, err = capsys.readouterr()
    assert code == 1
    assert "has no prana tables in schema 'prana' yet" in err
    assert "a command that writes to it (prana run, resume, ...) creates" in err
    assert sql(url, "SELECT count(*) FROM pg_namespace WHERE nspname = 'prana'") == [(0,)]


def test_a_process_frozen_inside_a_transaction_holds_up_the_others_for_seconds_only() -> None:
    # A session set up as the store sets up its own, frozen (SIGSTOP, a paused VM)
    # between two statements of a beat: it holds the lock every engine's beat takes.
    import threading
    import time

    import psycopg

    from prana.storage._postgres_schema import BEAT_LOCK, IDLE_IN_TRANSACTION, session_options

    url = postgres.database()

    async def create_the_schema() -> None:
        store = PostgresStore(url)
        await store.open()
        await store.aclose()

    anyio.run(create_the_schema)
    frozen = psycopg.connect(url, autocommit=True, options=session_options("prana"))
    frozen.execute("BEGIN")
    frozen.execute("SELECT pg_advisory_xact_lock(%s)", (BEAT_LOCK,))
    beats: list[float] = []

    async def another_engines_beat() -> None:
        store = PostgresStore(url)
        await store.open()
        try:
            began = time.monotonic()
            await store.beat("other-engine", now=time.time(), stale_after=30.0)
            beats.append(time.monotonic() - began)
        finally:
            await store.aclose()

    other = threading.Thread(target=anyio.run, args=(another_engines_beat,), daemon=True)
    other.start()
    other.join(timeout=IDLE_IN_TRANSACTION + 30)
    try:
        assert not other.is_alive(), "a session frozen in a transaction held the others up"
        assert IDLE_IN_TRANSACTION - 1 < beats[0] < IDLE_IN_TRANSACTION + 30
        # Awake again, the frozen process finds its session ended, its transaction gone.
        with pytest.raises(psycopg.Error, match="idle-in-transaction timeout"):
            frozen.execute("SELECT 1")
    finally:
        frozen.close()


def test_an_execution_is_read_as_one_state_while_another_engine_commits() -> None:
    # Another engine moves a waiting execution on and back, each move one commit
    # (status and wait together). Every read (whole, or in a listing) sees one of
    # the two states, never the status of one with the waits of the other.
    import threading

    import psycopg

    url = postgres.database()

    async def make_one_wait() -> str:
        async with prana.Engine(store=url, env={}) as engine:
            return (await engine.run(WAITING)).id

    execution_id = anyio.run(make_one_wait)
    (wait,) = sql(
        url, f"SELECT record::text FROM prana.suspensions WHERE execution_id = '{execution_id}'"
    )
    stop = threading.Event()

    def move_on_and_back() -> None:
        with psycopg.connect(url, autocommit=True) as db:
            while not stop.is_set():
                with db.transaction():
                    db.execute(
                        "UPDATE prana.executions SET status = 'running' WHERE id = %s",
                        (execution_id,),
                    )
                    db.execute(
                        "DELETE FROM prana.suspensions WHERE execution_id = %s", (execution_id,)
                    )
                with db.transaction():
                    db.execute(
                        "UPDATE prana.executions SET status = 'suspended' WHERE id = %s",
                        (execution_id,),
                    )
                    db.execute(
                        "INSERT INTO prana.suspensions (execution_id, execution_index, record) "
                        "VALUES (%s, 1, %s::json)",
                        (execution_id, wait[0]),
                    )

    async def read_while_it_moves() -> list[tuple[str, int]]:
        store = PostgresStore(url)
        await store.open()
        mover = threading.Thread(target=move_on_and_back, daemon=True)
        mover.start()
        seen: list[tuple[str, int]] = []
        try:
            for _ in range(400):
                stored = await store.load_execution(execution_id)
                (listed,) = await store.list_executions(workflow_id="approve")
                for read in (stored, listed):
                    assert read is not None
                    seen.append((read.status, len(read.suspensions)))
        finally:
            stop.set()
            mover.join()
            await store.aclose()
        return seen

    seen = anyio.run(read_while_it_moves)
    assert set(seen) <= {("running", 0), ("suspended", 1)}
    assert len(set(seen)) == 2  # the reads did see it move
