"""The testing kit behind :mod:`prana.testing`: an engine on a throwaway SQLite file,
and a child process killed at a chosen node boundary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import attrs

from prana._loading import WorkflowSource, load_workflow, workflow_to_dict
from prana._model import Workflow
from prana._registry import ActionRegistry

from ._clock import Clock, VirtualClock
from ._engine import Durability, Engine


@asynccontextmanager
async def open_engine(
    *,
    actions: ActionRegistry | None = None,
    path: str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
    durability: Durability = "normal",
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> AsyncGenerator[Engine]:
    """An engine on a SQLite file in a temporary folder (or at ``path``), with a
    :class:`VirtualClock` unless ``clock`` is given and no environment variables
    for templates unless ``env`` is. The folder is removed afterwards.

    With ``$PRANA_TEST_STORE`` set to a ``postgresql://`` URL, the engine keeps its
    executions there instead, in a new PostgreSQL schema of its own: the same tests
    then run on PostgreSQL. ``engine.store_path`` is the file (or the URL, or
    ``path`` as given), to open a second engine on it.
    """
    with tempfile.TemporaryDirectory(prefix="prana-test-") as folder:
        shared = os.environ.get("PRANA_TEST_STORE", "")
        file: Path | str
        if path is not None:
            file = path if isinstance(path, str) and "://" in path else Path(path)
        elif shared.startswith(("postgresql:", "postgres:")):
            joiner = "&" if "?" in shared else "?"
            file = f"{shared}{joiner}schema=test_{os.urandom(6).hex()}"
        else:
            file = Path(folder) / "prana.db"
        engine = Engine(
            actions=actions,
            store=file,
            clock=clock or VirtualClock(),
            durability=durability,
            env={} if env is None else env,
            **options,
        )
        engine.store_path = file  # type: ignore[attr-defined]
        async with engine:
            yield engine


@attrs.frozen(kw_only=True)
class KillReport:
    """What :func:`kill_at` saw: the execution's id, and whether the child was killed
    at the chosen boundary (``False``: the execution stopped before reaching it)."""

    execution_id: str | None
    killed: bool
    returncode: int
    stderr: str


def kill_at(
    workflow: Workflow | WorkflowSource,
    *,
    db: str | os.PathLike[str],
    node: str,
    when: Literal["started", "completed", "retrying", "ended"] = "completed",
    run_index: int = 0,
    input: Any = None,
    actions: str | None = None,
    workflows: Sequence[Workflow | WorkflowSource] = (),
    timeout: float = 60.0,
) -> KillReport:
    """Run ``workflow`` in a child process on the SQLite file ``db`` and SIGKILL the
    child when ``node`` (its run ``run_index``) has ``started``, ``completed``, or
    failed an attempt and is ``retrying``.

    Events are published after the checkpoint they describe is saved: at
    ``completed`` the node's result is on disk, at ``started`` the node is in flight
    and will run again (with the same idempotency key) when an engine carries the
    execution on; at ``retrying`` the failed attempt is on disk and the next one is
    waiting for its backoff; at ``ended`` the execution that ran ``node`` (a child
    execution, say) has ended and is saved, and nobody has heard of it yet. A pure
    node's events come once the pure nodes after it are saved with it (decision
    0069): kill at the actions whose effects the test is about.
    ``actions`` is a ``module:attribute`` spec for custom actions, importable by the
    child; ``workflows`` are registered for ``workflow.execute`` nodes to start.
    """
    if not isinstance(workflow, Workflow):
        workflow = load_workflow(workflow)
    spec = {
        "db": str(db),
        "workflow": workflow_to_dict(workflow),
        "node": node,
        "when": when,
        "run_index": run_index,
        "input": input,
        "actions": actions,
        "workflows": [
            workflow_to_dict(w if isinstance(w, Workflow) else load_workflow(w)) for w in workflows
        ],
    }
    done = subprocess.run(
        [sys.executable, "-m", "prana.actors._crash_child"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.split()
    execution_id = lines[0] if lines else None
    return KillReport(
        execution_id=execution_id,
        killed=done.returncode == -signal.SIGKILL,
        returncode=done.returncode,
        stderr=done.stderr,
    )
