"""The PostgreSQL store's URL, the settings of its sessions, and its schema, in its
own PostgreSQL schema (``prana`` unless the URL names another), and how it is created
and migrated.

Values (inputs, outputs, variables, records) are ``json``, not ``jsonb``: ``json``
keeps the text as written, so objects keep their keys' order and a string may hold
``\\u0000``, which ``jsonb`` refuses (a node output with one would fail the
transaction it is in, and every checkpoint of that batch with it). See decision 0057.

Migrations run in one transaction under an advisory lock, so that several processes
starting at once on a new database create it once.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from prana._errors import StoreError

from ._engines import ENGINES_SCHEMA
from ._queue import QUEUE_SCHEMA

FINAL = "('completed', 'failed', 'cancelled', 'timed_out')"


# libpq's settings of the store's connections where the URL sets none: a server that
# cannot be reached is an error in seconds, not once TCP gives up (minutes to hours).
CONNECTION_DEFAULTS = {
    "connect_timeout": "10",  # seconds to connect
    # An idle connection (LISTEN's, a pooled one) probes the server after 10 s of
    # silence, then every 5 s, and is dead after 3 probes unanswered.
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    # A statement sent is an error if the server has not acknowledged it in 30 s.
    "tcp_user_timeout": "30000",
}


def parse_url(url: str) -> tuple[str, str, int]:
    """The connection string, schema and pool size of ``postgresql://...`` (options
    ``?schema=NAME&pool=N``; the others go to libpq, beside ``CONNECTION_DEFAULTS``
    for those the URL does not set).

    Without the defaults a network that drops packets (a partition, a server's
    host gone without a reset) holds a statement, and its worker thread, until the
    network comes back or the kernel gives up on the connection: about 15 minutes
    for data sent, never for a connection waiting to hear (``LISTEN``). The
    engine's leases end meanwhile and other engines take its executions over, but
    the engine itself stays stuck: it neither reconnects (to a server that came back
    elsewhere, say) nor shuts down until then."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreError(f"{url!r} is not a PostgreSQL store URL; write postgresql://user@host/db")
    options = dict(urllib.parse.parse_qsl(parts.query))
    schema = options.pop("schema", "prana")
    if not schema.isidentifier():
        raise StoreError(f"schema must be a plain name (letters, digits, _), not {schema!r}")
    size = options.pop("pool", "8")
    if not size.isdigit() or not 1 <= int(size) <= 100:
        raise StoreError(f"pool must be a whole number from 1 to 100, not {size!r}")
    query = urllib.parse.urlencode({**CONNECTION_DEFAULTS, **options})
    address = (parts.scheme, parts.netloc, parts.path, query, parts.fragment)
    return urllib.parse.urlunsplit(address), schema, int(size)


IDLE_IN_TRANSACTION = 5.0  # seconds a session may stay in a transaction without a statement


def session_options(schema: str) -> str:
    """The settings of the store's pooled sessions: its schema first on the search
    path, and an end to a session that stays in a transaction without a statement
    for ``IDLE_IN_TRANSACTION`` seconds.

    A process can stop between two statements of a transaction (frozen by SIGSTOP, a
    paused VM, a debugger) while its rows and advisory locks stay taken: every other
    engine's beat, claim or take of those rows would wait for as long as it stays
    frozen. The server ends such a session instead (a transaction of the store's takes
    milliseconds): its transaction is rolled back, its locks go, and the frozen
    process, once it wakes, finds its connection closed."""
    idle = round(IDLE_IN_TRANSACTION * 1000)
    return f"-c search_path={schema} -c idle_in_transaction_session_timeout={idle}"


MIGRATIONS: tuple[str, ...] = (
    # 1: everything the store keeps.
    f"""
    CREATE TABLE workflows (
        hash TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        definition JSON NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX workflows_by_id ON workflows (id, version, created_at);
    CREATE TABLE kept_workflows (
        workflow_id TEXT PRIMARY KEY,
        hash TEXT NOT NULL REFERENCES workflows (hash)
    );
    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        workflow_version INTEGER NOT NULL,
        workflow_hash TEXT NOT NULL,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        input JSON,
        vars JSON NOT NULL,
        paths JSON NOT NULL,
        iteration_count INTEGER NOT NULL,
        error JSON,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        updated_at DOUBLE PRECISION,
        parent_execution_id TEXT,
        root_execution_id TEXT,
        owner TEXT,
        lease_expires DOUBLE PRECISION,
        mode TEXT,
        depth INTEGER NOT NULL,
        deadline DOUBLE PRECISION,
        request JSON,
        revision BIGINT NOT NULL
    );
    CREATE INDEX executions_by_start ON executions ((COALESCE(started_at, 0)), id);
    CREATE INDEX executions_by_status ON executions (status, (COALESCE(started_at, 0)), id);
    CREATE INDEX executions_by_workflow
        ON executions (workflow_id, (COALESCE(started_at, 0)), id);
    CREATE INDEX executions_running ON executions (owner) WHERE status = 'running';
    CREATE INDEX executions_by_deadline ON executions (deadline, id)
        WHERE deadline IS NOT NULL AND status NOT IN {FINAL};
    CREATE INDEX executions_by_parent ON executions (parent_execution_id)
        WHERE mode = 'sync' AND status NOT IN {FINAL};
    CREATE TABLE node_runs (
        execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        execution_index INTEGER NOT NULL,
        record JSON NOT NULL,
        PRIMARY KEY (execution_id, execution_index)
    );
    CREATE TABLE paths_blocks (
        execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        block JSON NOT NULL,
        PRIMARY KEY (execution_id, number)
    );
    CREATE TABLE node_context_fields (
        execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        node_key TEXT NOT NULL,
        field TEXT NOT NULL,
        value JSON,
        PRIMARY KEY (execution_id, node_key, field)
    );
    CREATE TABLE suspensions (
        execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        execution_index INTEGER NOT NULL,
        token TEXT,
        wake_at DOUBLE PRECISION,
        child_execution_id TEXT,
        record JSON NOT NULL,
        PRIMARY KEY (execution_id, execution_index)
    );
    CREATE INDEX suspensions_by_token ON suspensions (token) WHERE token IS NOT NULL;
    CREATE INDEX suspensions_by_wake ON suspensions (wake_at, execution_id, execution_index)
        WHERE wake_at IS NOT NULL;
    CREATE INDEX suspensions_by_child ON suspensions (child_execution_id)
        WHERE child_execution_id IS NOT NULL;
    CREATE TABLE schedules (
        workflow_id TEXT NOT NULL,
        trigger TEXT NOT NULL,
        spec TEXT NOT NULL,
        next_at DOUBLE PRECISION NOT NULL,
        pending_at DOUBLE PRECISION,
        paused BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (workflow_id, trigger)
    );
    """,
    # 2: executions queued before they start (a concurrency key, a priority).
    QUEUE_SCHEMA,
    # 3: a row per engine, its heartbeat and the leader lease.
    ENGINES_SCHEMA,
)
LATEST = len(MIGRATIONS)
LOCK = 0x7072616E  # the advisory lock migrations run under ("pran")
CLAIM_LOCK = 0x70726E71  # the one claims from the queue run under ("prnq")
BEAT_LOCK = 0x70726E62  # the one engines' beats run under ("prnb")


def migrate(db: Any, schema: str, name: str) -> None:
    """Create or migrate the tables in ``schema`` (``name`` is the store, as errors
    show it), in the caller's transaction, under an advisory lock. Raises
    :class:`StoreError`, changing nothing, if the schema holds another program's
    tables or a newer version of prana's."""
    db.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
    db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    db.execute(
        "CREATE TABLE IF NOT EXISTS prana_schema (version INTEGER NOT NULL, "
        "application TEXT NOT NULL DEFAULT 'prana')"
    )
    row = db.execute("SELECT version FROM prana_schema").fetchone()
    if row is None:
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name <> 'prana_schema'",
            (schema,),
        ).fetchall()
        if tables:
            shown = ", ".join(sorted(t[0] for t in tables)[:5])
            raise StoreError(
                f"the schema {schema!r} of {name} holds another program's tables "
                f"({shown}); give prana a schema of its own with ?schema=NAME"
            )
        db.execute("INSERT INTO prana_schema (version) VALUES (0)")
        version = 0
    else:
        version = row[0]
    if version > LATEST:
        raise StoreError(
            f"{name} has schema version {version}, newer than this prana knows "
            f"({LATEST}); upgrade prana to use it"
        )
    for target in range(version + 1, LATEST + 1):
        db.execute(MIGRATIONS[target - 1])
    db.execute("UPDATE prana_schema SET version = %s", (LATEST,))


def describe(db: Any, schema: str, name: str) -> str:
    """What :func:`migrate` would find in ``schema``, in words, changing nothing;
    raises :class:`StoreError` where it would refuse."""
    tables = {
        row[0]
        for row in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    }
    if "prana_schema" not in tables:
        if tables:
            shown = ", ".join(sorted(tables)[:5])
            raise StoreError(
                f"the schema {schema!r} of {name} holds another program's tables ({shown}); "
                "give prana a schema of its own with ?schema=NAME"
            )
        return f"{name} has no prana tables in schema {schema!r} yet: they are created on start"
    row = db.execute(f"SELECT version FROM {schema}.prana_schema").fetchone()
    version = 0 if row is None else row[0]
    if version > LATEST:
        raise StoreError(
            f"{name} has schema version {version}, newer than this prana knows ({LATEST}); "
            "upgrade prana to use it"
        )
    if version < LATEST:
        return f"{name} is at schema version {version}: it is migrated to {LATEST} on start"
    return f"{name} is a prana database at schema version {version} (schema {schema!r})"


def require_latest(db: Any, schema: str, name: str) -> None:
    """Refuse to read ``schema`` unless prana's tables are there at this code's
    version (:func:`describe` says what is there instead); changes nothing."""
    said = describe(db, schema, name)
    if "is a prana database" not in said:
        raise StoreError(
            f"{said}; a command that writes to it (prana run, resume, ...) "
            "creates or migrates it first"
        )
