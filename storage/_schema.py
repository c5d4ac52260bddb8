"""The SQLite schema and its forward migrations (DESIGN §8).

``PRAGMA application_id`` marks a file as prana's; ``PRAGMA user_version`` is the
schema version. Migration ``n`` takes a database from version ``n`` to ``n + 1``; a
database newer than this code is refused rather than misread.

Tables:

* ``workflows``: every workflow definition an execution started on, by content hash.
* ``executions``: one row per execution: its status, owner and lease, variables.
* ``node_executions``: the audit trail, one row per ended node run, appended; and
  after an execution's runs, at execution index ``STATE_ROW``, its *state row*: the
  routing state (``output``, bounded by the size of the workflow), the iteration
  count (``run_index``) and the time of its last checkpoint (``finished_at``). The
  state row sorts after every run of its execution, so the run a step appends and
  the state it updates share a B-tree page: a step writes one page (decision 0025).
  A large workflow's routing state has block rows after the state row.
* ``node_context_fields``: each node's persistent context, a row per field, written
  when it changes (``node_contexts``, a row per context, until version 7).
* ``run_outputs``: the outputs longer than 700 bytes of JSON, by number; the run's
  row keeps the number (``output_id``) and no output (since version 7).
* ``suspensions``: the nodes waiting, with their resume token and deadline (and the
  child execution a ``workflow.execute`` node waits for).

Version 2 added what sub-workflows and control need: an execution's ``mode`` (how
its parent started it), ``depth`` (how many parents it has), ``deadline``
(``settings.timeout``), ``request`` (a cancel or pause asked of the engine that
runs it) and a suspension's ``child_execution_id``. Version 3 added ``schedules``,
the next time of each schedule trigger. Version 4 added an execution's ``revision``:
the number of checkpoints applied to it, which taking a waiting execution checks, so
that an engine never takes one whose state another engine has moved on from.
Version 5 moved the routing state and iteration count out of ``executions`` (its
``paths`` and ``iteration_count`` columns are left empty) into state rows, and
``revision`` now counts the changes to an execution's row: a plain step of a running
execution, which changes only its state row, leaves it alone. Version 6 stores JSON
(definitions, inputs, variables, outputs, errors, contexts) as text instead of blobs,
so that SQLite's JSON functions read every row (decision 0031). Version 7 keeps
node contexts field by field, so that a step rewrites only the fields it changed
(``core.for_each`` keeps its items in its context), and the routing state of a
workflow of more than 64 nodes or edges in blocks, rows after the state row (block
``k`` at execution index ``STATE_ROW + 1 + k``), each rewritten only when a step
changes it (decision 0040), and a run's output longer than 700 bytes in
``run_outputs``, so that it does not take an overflow page of its own (decision 0043).
Version 8 added a suspension's ``data`` (``Suspend(data=...)``) and a node run's
rendered ``params`` (for a run that waits, with its suspension). Version 9 added a
schedule's ``paused`` flag, an index of executions by start time (pages of
listings), and ``kept_workflows``: the definition each engine on the store serves
by id (those added through ``Engine.keep_serving``, the daemon's ``POST
/api/workflows``).
"""

from __future__ import annotations

from ._engines import ENGINES_SCHEMA
from ._queue import QUEUE_SCHEMA

APPLICATION_ID = 0x7072616E  # "pran"
STATE_ROW = 1 << 62  # the execution index of an execution's state row

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1
    """
    CREATE TABLE workflows (
        hash TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        definition BLOB NOT NULL,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX workflows_by_id ON workflows (id, version);

    CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        workflow_hash TEXT NOT NULL REFERENCES workflows (hash),
        workflow_id TEXT NOT NULL,
        workflow_version INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        input BLOB,
        vars BLOB NOT NULL,
        paths BLOB NOT NULL,
        iteration_count INTEGER NOT NULL DEFAULT 0,
        error BLOB,
        started_at REAL,
        finished_at REAL,
        updated_at REAL NOT NULL,
        parent_execution_id TEXT,
        root_execution_id TEXT,
        owner TEXT,
        lease_expires REAL
    ) WITHOUT ROWID;
    CREATE INDEX executions_by_status ON executions (status, started_at);
    CREATE INDEX executions_by_workflow ON executions (workflow_id, started_at);

    CREATE TABLE node_executions (
        execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        execution_index INTEGER NOT NULL,
        node_key TEXT NOT NULL,
        run_index INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        status TEXT NOT NULL,
        port TEXT,
        output BLOB,
        error BLOB,
        inputs BLOB,
        started_at REAL,
        finished_at REAL,
        duration_ms REAL,
        PRIMARY KEY (execution_id, execution_index)
    ) WITHOUT ROWID;

    CREATE TABLE node_contexts (
        execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        node_key TEXT NOT NULL,
        context BLOB NOT NULL,
        PRIMARY KEY (execution_id, node_key)
    ) WITHOUT ROWID;

    CREATE TABLE suspensions (
        execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        execution_index INTEGER NOT NULL,
        node_key TEXT NOT NULL,
        run_index INTEGER NOT NULL,
        kind TEXT NOT NULL,
        token TEXT UNIQUE,
        wake_at REAL,
        wake_port TEXT NOT NULL,
        wake_data BLOB,
        resume_port TEXT NOT NULL,
        started_at REAL,
        PRIMARY KEY (execution_id, execution_index)
    ) WITHOUT ROWID;
    CREATE INDEX suspensions_by_wake ON suspensions (wake_at) WHERE wake_at IS NOT NULL;
    """,
    # 1 -> 2
    """
    ALTER TABLE executions ADD COLUMN mode TEXT;
    ALTER TABLE executions ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN deadline REAL;
    ALTER TABLE executions ADD COLUMN request BLOB;
    CREATE INDEX executions_by_deadline ON executions (deadline) WHERE deadline IS NOT NULL;
    CREATE INDEX executions_by_request ON executions (owner) WHERE request IS NOT NULL;
    CREATE INDEX executions_by_parent ON executions (parent_execution_id)
        WHERE parent_execution_id IS NOT NULL;
    ALTER TABLE suspensions ADD COLUMN child_execution_id TEXT;
    CREATE INDEX suspensions_by_child ON suspensions (child_execution_id)
        WHERE child_execution_id IS NOT NULL;
    """,
    # 2 -> 3
    """
    CREATE TABLE schedules (
        workflow_id TEXT NOT NULL,
        trigger TEXT NOT NULL,
        spec TEXT NOT NULL,
        next_at REAL NOT NULL,
        pending_at REAL,
        PRIMARY KEY (workflow_id, trigger)
    ) WITHOUT ROWID;
    """,
    # 3 -> 4
    """
    ALTER TABLE executions ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    """,
    # 4 -> 5
    f"""
    INSERT INTO node_executions (execution_id, execution_index, node_key, run_index, attempt,
                                 status, output, finished_at)
        SELECT id, {STATE_ROW}, '', iteration_count, 0, 'state', paths, updated_at
        FROM executions;
    UPDATE executions SET paths = '{{}}', iteration_count = 0;
    """,
    # 5 -> 6
    """
    UPDATE workflows SET definition = CAST(definition AS TEXT);
    UPDATE executions SET input = CAST(input AS TEXT), vars = CAST(vars AS TEXT),
        paths = CAST(paths AS TEXT), error = CAST(error AS TEXT),
        request = CAST(request AS TEXT);
    UPDATE node_executions SET output = CAST(output AS TEXT), error = CAST(error AS TEXT),
        inputs = CAST(inputs AS TEXT);
    UPDATE node_contexts SET context = CAST(context AS TEXT);
    UPDATE suspensions SET wake_data = CAST(wake_data AS TEXT);
    """,
    # 6 -> 7: node contexts field by field (a large workflow's routing state may
    # also have block rows after its state row, in node_executions as it is).
    """
    CREATE TABLE node_context_fields (
        execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
        node_key TEXT NOT NULL,
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (execution_id, node_key, field)
    ) WITHOUT ROWID;
    INSERT INTO node_context_fields (execution_id, node_key, field, value)
        SELECT c.execution_id, c.node_key, f.key,
            CASE f.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
                WHEN 'null' THEN 'null' WHEN 'object' THEN f.value WHEN 'array' THEN f.value
                ELSE json_quote(f.value) END
        FROM node_contexts AS c, json_each(c.context) AS f;
    DROP TABLE node_contexts;
    CREATE TABLE run_outputs (
        number INTEGER PRIMARY KEY,
        output TEXT NOT NULL
    );
    ALTER TABLE node_executions ADD COLUMN output_id INTEGER;
    """,
    # 7 -> 8: what a waiting node's action said whoever answers it needs to know, and
    # the parameters each node run was given.
    """
    ALTER TABLE suspensions ADD COLUMN data TEXT;
    ALTER TABLE suspensions ADD COLUMN params TEXT;
    ALTER TABLE node_executions ADD COLUMN params TEXT;
    """,
    # 8 -> 9: a schedule paused by an operator; executions listed a page at a time.
    """
    ALTER TABLE schedules ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX executions_by_start ON executions (started_at, id);
    CREATE TABLE kept_workflows (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL REFERENCES workflows (hash)
    ) WITHOUT ROWID;
    """,
    # 9 -> 10: executions queued before they start (a concurrency key, a priority).
    QUEUE_SCHEMA,
    # 10 -> 11: a row per engine, its heartbeat and the leader lease.
    ENGINES_SCHEMA,
)

LATEST = len(MIGRATIONS)
