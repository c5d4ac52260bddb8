"""Round trips of every persisted type through the SQLite rows (property tests)."""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import prana
from prana._records import Checkpoint
from prana.storage._schema import MIGRATIONS
from prana.storage._sqlite_reads import load_execution
from prana.storage._sqlite_rows import apply_checkpoints

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
times = st.one_of(st.none(), st.floats(0, 2e9, allow_nan=False))

errors = st.builds(
    prana.ErrorInfo,
    code=keys,
    message=st.text(),
    details=json_values,
    node_key=st.one_of(st.none(), keys),
    run_index=st.one_of(st.none(), st.integers(0, 100)),
)


@st.composite
def node_runs(draw: st.DrawFn, index: int) -> prana.NodeRun:
    return prana.NodeRun(
        node_key=draw(keys),
        run_index=draw(st.integers(0, 1000)),
        execution_index=index,
        status=draw(st.sampled_from(["completed", "failed", "cancelled"])),
        attempt=draw(st.integers(1, 10)),
        port=draw(st.one_of(st.none(), keys)),
        output=draw(json_values),
        error=draw(st.one_of(st.none(), errors)),
        started_at=draw(times),
        finished_at=draw(times),
        duration_ms=draw(st.one_of(st.none(), st.floats(0, 1e9))),
        inputs=tuple(draw(st.lists(st.tuples(keys, st.integers(0, 1000)), max_size=3))),
    )


@st.composite
def suspensions(draw: st.DrawFn, index: int) -> prana.Suspension:
    return prana.Suspension(
        execution_id="e1",
        node_key=draw(keys),
        run_index=draw(st.integers(0, 100)),
        execution_index=index,
        kind=draw(st.sampled_from(["interval", "until", "webhook"])),
        token=draw(
            st.one_of(st.none(), st.text(min_size=1, max_size=40).map(lambda t: f"t{index}-{t}"))
        ),
        wake_at=draw(times),
        wake_port=draw(keys),
        wake_data=draw(json_values),
        resume_port=draw(keys),
        started_at=draw(times),
        child_execution_id=draw(st.one_of(st.none(), keys)),
    )


def database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    for script in MIGRATIONS:
        db.executescript(script)
    db.execute("INSERT INTO workflows VALUES ('h1', 'w', 1, '{}', 0)")
    return db


@settings(max_examples=150, deadline=None)
@given(
    runs=st.integers(0, 4).flatmap(lambda n: st.tuples(*(node_runs(i) for i in range(n)))),
    waiting=st.integers(0, 3).flatmap(
        lambda n: st.tuples(*(suspensions(10 + i) for i in range(n)))
    ),
    input=json_values,
    variables=st.dictionaries(keys, json_values, max_size=3),
    contexts=st.dictionaries(keys, st.dictionaries(keys, json_values, max_size=3), max_size=3),
    error=st.one_of(st.none(), errors),
    # A store keeps what the core gives it, whatever the status (the core decides
    # what a completed execution's routing state keeps).
    status=st.sampled_from(["running", "suspended", "completed", "failed"]),
    iterations=st.integers(0, 10_000),
    parent=st.one_of(
        st.none(), st.tuples(keys, keys, st.sampled_from(["sync", "fire_and_forget"]))
    ),
    depth=st.integers(0, 50),
    deadline=times,
)
def test_an_execution_round_trips_through_its_rows(
    runs: tuple[prana.NodeRun, ...],
    waiting: tuple[prana.Suspension, ...],
    input: Any,
    variables: dict[str, Any],
    contexts: dict[str, Any],
    error: prana.ErrorInfo | None,
    status: str,
    iterations: int,
    parent: tuple[str, str, Any] | None,
    depth: int,
    deadline: float | None,
) -> None:
    parent_id, root_id, mode = parent or (None, None, None)
    checkpoint = Checkpoint(
        execution_id="e1",
        workflow_id="w",
        workflow_version=1,
        workflow_hash="h1",
        status=status,  # type: ignore[arg-type]
        trigger="start",
        input=input,
        kind="start",
        active_paths={"format": 1, "nodes": "0123", "edges": {"3": 7}},
        iteration_count=iterations,
        vars=variables,
        node_contexts=contexts,
        error=error,
        started_at=1.5,
        runs=runs,
        suspensions_added=waiting,
        parent_execution_id=parent_id,
        root_execution_id=root_id,
        mode=mode,
        depth=depth,
        deadline=deadline,
    )
    db = database()
    assert apply_checkpoints(db, [checkpoint], "me", 10.0, 2.0) == set()
    stored = load_execution(db, "e1")
    assert stored is not None
    assert stored.runs == runs
    assert stored.suspensions == waiting
    assert stored.input == input
    assert stored.vars == variables
    assert stored.error == error
    assert (stored.status, stored.iteration_count, stored.workflow_hash) == (
        status,
        iterations,
        "h1",
    )
    assert stored.active_paths == checkpoint.active_paths
    assert (stored.parent_execution_id, stored.root_execution_id, stored.mode) == (
        parent_id,
        root_id,
        mode,
    )
    assert (stored.depth, stored.deadline, stored.request) == (depth, deadline, None)
    # A context is kept field by field: one without fields is no context.
    assert stored.node_contexts == {key: fields for key, fields in contexts.items() if fields}
