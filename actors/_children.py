"""Child executions: starting them, and telling parents when they end (DESIGN §5.6).

A node's worker asks the engine to start the child an action asked for
(:class:`prana.ExecuteWorkflow`). The child's id follows from the parent run, so a
node that runs again after a crash finds its child instead of starting another; the
child is saved before the worker reports back, so a parent never waits for a child
that does not exist.

When a ``sync`` child ends, its supervisor tells the engine, which hands the outcome
to the parent: in memory if it runs here, or by taking it from the store if it
waits there. A parent that runs in another engine, or an outcome lost to a crash,
is found by :func:`reconcile`, which the engine runs at start-up and with every
heartbeat: every node waiting for a child that has ended hears of it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prana._commands import Dispatch
from prana._errors import (
    ExecutionNotFound,
    InvalidTransition,
    NodeError,
    PranaError,
    WorkflowValidationError,
)
from prana._loading import load_workflow
from prana._machine import ExecutionMachine
from prana._model import Workflow
from prana._records import ChildOutcome, Execution
from prana._subworkflows import ExecuteWorkflow, child_execution_id

if TYPE_CHECKING:
    from ._engine import Engine

logger = logging.getLogger("prana.engine")


async def start_child(
    engine: Engine, parent: ExecutionMachine, dispatch: Dispatch, request: ExecuteWorkflow
) -> str:
    """Start the child execution ``request`` asks for and return its id once it is
    saved; if this run of the node started it already, return that child's id.

    Raises :class:`NodeError` (which fails the node) when the workflow is unknown or
    invalid, or when starting it would nest executions deeper than the engine's
    ``max_depth``.
    """
    child_id = child_execution_id(dispatch.context)
    live = engine._live.get(child_id)
    if live is not None:
        await live.wait_saved()
        return child_id
    store = engine._require_store()
    if await store.load_execution(child_id) is not None:
        return child_id  # started before this run was carried out again
    depth = parent.depth + 1
    if depth > engine.max_depth:
        raise NodeError(
            f"starting workflow {request.workflow!r} would nest executions {depth} deep, "
            f"past this engine's limit of {engine.max_depth} (Engine(max_depth=...)); a "
            "workflow that calls itself needs a condition that ends the recursion",
            code="depth_limit",
            details={"depth": depth, "max_depth": engine.max_depth},
        )
    workflow = await find_workflow(engine, request.workflow, request.version)
    try:
        graph = engine.compile(workflow, trigger=request.trigger)
    except WorkflowValidationError as exc:
        raise NodeError(
            f"workflow {request.workflow!r} cannot run: {exc}", code="invalid_workflow"
        ) from None
    await engine._save_definition(graph)
    machine = ExecutionMachine(
        graph,
        execution_id=child_id,
        input=request.input,
        env=engine._env,
        parent_execution_id=parent.execution_id,
        root_execution_id=parent.root_execution_id or parent.execution_id,
        mode=request.mode,
        depth=depth,
    )
    supervisor = engine._launch(machine, machine.start)
    await supervisor.wait_saved()
    return child_id


async def find_workflow(engine: Engine, workflow_id: str, version: int | None) -> Workflow:
    """A workflow the engine knows (registered, or stored by an earlier execution):
    ``version``, or the highest. Raises :class:`NodeError` if there is none."""
    versions = engine._catalog.registered.get(workflow_id, {})
    if version is None and versions:
        return versions[max(versions)]
    if version is not None and version in versions:
        return versions[version]
    stored = await engine._require_store().find_workflow(workflow_id, version)
    if stored is not None:
        return load_workflow(stored.definition, actions=engine.actions)
    which = f"{workflow_id!r}" + (f" version {version}" if version is not None else "")
    raise NodeError(
        f"no workflow {which} is registered with this engine or stored; register it "
        "with engine.register(...) ('prana run' registers the workflow files next to "
        "the one it runs)",
        code="unknown_workflow",
        details={"workflow": workflow_id, "version": version},
    )


def outcome_of(child: Execution) -> ChildOutcome:
    """How ``child`` ended, for its parent."""
    return ChildOutcome(
        child_execution_id=child.id,
        status=child.status,
        output=child.output if child.status == "completed" else None,
        error=child.error,
    )


async def tell_parent(engine: Engine, parent_id: str, outcome: ChildOutcome) -> None:
    """Hand a child's outcome to the parent node waiting for it, wherever it waits."""
    supervisor = engine._live.get(parent_id)
    if supervisor is not None:
        supervisor.deliver(outcome)
        return
    stored = await engine._require_store().load_execution(parent_id)
    if stored is None or stored.status not in ("suspended", "paused"):
        return  # ended, or running in another engine (whose reconcile tells it)
    if not any(s.child_execution_id == outcome.child_execution_id for s in stored.suspensions):
        return
    machine = await engine._restore(stored)
    commands = machine.child_ended(outcome, engine.clock.now())
    if commands or machine.has_unsaved_changes:
        machine.take_on_save = True
        engine._launch(machine, lambda now: commands)


async def tell_parent_quietly(engine: Engine, parent_id: str, outcome: ChildOutcome) -> None:
    try:
        await tell_parent(engine, parent_id, outcome)
    except PranaError as exc:  # reconcile tries again with the next heartbeat
        logger.warning(
            "could not tell execution %s that child %s ended: %s",
            parent_id,
            outcome.child_execution_id,
            exc,
        )


async def reconcile(engine: Engine) -> None:
    """Tell every node waiting for a child that has ended (children that ended while
    no process ran, or whose parent waits in the store)."""
    store = engine._require_store()
    for suspension in await store.finished_children():
        assert suspension.child_execution_id is not None
        child = await store.load_execution(suspension.child_execution_id)
        if child is not None:
            await tell_parent_quietly(
                engine, suspension.execution_id, outcome_of(child.to_execution())
            )


async def cancel_quietly(engine: Engine, execution_id: str, reason: str) -> None:
    """Cancel a child whose parent stopped waiting for it, if it has not ended."""
    try:
        await engine.cancel(execution_id, reason)
    except (InvalidTransition, ExecutionNotFound):
        pass  # it ended already
    except PranaError as exc:
        logger.warning("could not cancel child execution %s: %s", execution_id, exc)
