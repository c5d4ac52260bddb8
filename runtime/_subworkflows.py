"""Sub-workflows: ``workflow.execute`` and how a parent learns of its child's end (DESIGN §5.6).

An action starts a child execution by returning :class:`ExecuteWorkflow`; the node
worker hands it to the engine, which creates the child (saving it before the node
goes on) and then either completes the node with the child's id (``fire_and_forget``)
or suspends it until the child ends (``sync``). A child's id follows from the parent
run that started it (its idempotency key and attempt), so a node that runs again
after a crash finds the child it started instead of starting a second one.

When a ``sync`` child ends, the parent's waiting node completes with the child's
output, or fails with an error naming the child (which retry and on_error see). The
functions here are the parent machine's side of that; like the machine they are
pure and synchronous.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._context import NodeContext
from ._errors import NodeError, Problem
from ._expressions import contains_template
from ._records import ChildMode
from ._registry import Action, ActionRegistry
from ._shapes import OutputShape, fields_shape

if TYPE_CHECKING:
    pass

MODES: tuple[ChildMode, ...] = ("sync", "fire_and_forget")
DEFAULT_MAX_DEPTH = 16


@attrs.frozen(kw_only=True)
class ExecuteWorkflow:
    """What an action returns to start a child execution of another workflow.

    ``workflow`` is the workflow id (``version``: a version, default the latest the
    engine knows); ``input`` is the child's input; ``trigger`` picks the child's
    trigger when it has several. ``mode="sync"`` waits for the child to end and
    completes the node with the child's output (or fails it with the child's error);
    ``"fire_and_forget"`` completes the node at once with
    ``{"execution_id": ..., "workflow": ...}`` once the child is saved.

    With ``items`` (a list), one child starts per item, with the item as its input
    (``input`` is not used): ``sync`` runs at most ``concurrency`` of them at once and
    completes the node with their outputs in item order, or fails it as soon as one
    fails (the others are cancelled); ``fire_and_forget`` starts them all and
    completes the node with the list of their ids.
    """

    workflow: str
    version: int | None = None
    input: Any = None
    mode: Literal["sync", "fire_and_forget"] = "sync"
    trigger: str | None = None
    items: Sequence[Any] | None = None
    concurrency: int = 10


def child_execution_id(
    context: NodeContext, item: int | None = None, *, attempt: int | None = None
) -> str:
    """The id of the child started by this run and attempt of a node (for ``item``
    of a batch; ``attempt``: an earlier attempt's): the same every time the run is
    carried out again, unique to it otherwise. Like every execution id, 32 hex
    digits; the first 12 are those of the parent's id (its start time)."""
    key = f"{context.idempotency_key}:{context.attempt if attempt is None else attempt}"
    if item is not None:
        key += f":{item}"
    digest = hashlib.blake2b(key.encode(), digest_size=10).hexdigest()
    return f"{context.execution_id[:12]}{digest}"


# --------------------------------------------------------------------------- the action

_registry = ActionRegistry(builtins=False)


@attrs.frozen(kw_only=True)
class ExecuteParams:
    """Parameters of ``workflow.execute``."""

    workflow: str
    version: int | None = None
    input: Any = None
    mode: str = "sync"
    trigger: str | None = None
    batch_mode: str | None = None
    items: Any = None
    concurrency: int = 10


BATCH_MODES = ("single",)
_NO_WORKFLOW = "give the id of the workflow to run (a registered workflow's id)"


def _check_execute(params: Mapping[str, Any]) -> Iterable[Problem]:
    workflow = params.get("workflow")
    if isinstance(workflow, str) and not workflow.strip():
        yield Problem(path="workflow", message=f"is empty: {_NO_WORKFLOW}")
    mode = params.get("mode", "sync")
    if not contains_template(mode) and mode not in MODES:
        yield Problem(
            path="mode", message=f"mode must be 'sync' or 'fire_and_forget', not {mode!r}"
        )
    batch_mode = params.get("batch_mode")
    if (
        batch_mode is not None
        and not contains_template(batch_mode)
        and batch_mode not in BATCH_MODES
    ):
        yield Problem(path="batch_mode", message=_batch_mode_problem(batch_mode))
    concurrency = params.get("concurrency", 10)
    if not contains_template(concurrency) and not _positive(concurrency):
        yield Problem(path="concurrency", message=_concurrency_problem(concurrency))
    if batch_mode is None:
        if "items" in params:
            yield Problem(
                path="items",
                message="items are started one child each only with batch_mode: single; "
                "add it, or give the child's input as input",
            )
        if "concurrency" in params:
            yield Problem(
                path="concurrency",
                message="concurrency bounds the children of batch_mode: single; add it, or "
                "leave concurrency out",
            )
    elif "input" in params:
        yield Problem(
            path="input",
            message="with batch_mode: single each child's input is its item; leave input "
            "out (build the items with a template to shape each child's input)",
        )


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _batch_mode_problem(value: Any) -> str:
    return (
        f"batch_mode must be 'single' (one child per item of the list), not {value!r}; "
        "leave it out to start one child"
    )


def _concurrency_problem(value: Any) -> str:
    return (
        f"concurrency is how many children run at once: a whole number of at least 1, not {value!r}"
    )


def _execute_shape(params: Mapping[str, Any]) -> OutputShape | None:
    """``fire_and_forget`` outputs the child's id and workflow; ``sync`` its output; a
    batch, a list of those."""
    if params.get("mode") == "fire_and_forget" and params.get("batch_mode") is None:
        return fields_shape("execution_id", "workflow")
    return None


@_registry.action(
    "workflow.execute",
    params=ExecuteParams,
    check=_check_execute,
    output=_execute_shape,
    isolate_inputs=False,
    json_output=True,
    description="Run another workflow as a child execution: wait for its output (sync) "
    "or only start it (fire_and_forget); with batch_mode: single, one child per item",
)
def execute_workflow(ctx: NodeContext) -> ExecuteWorkflow:
    """Starts a child execution of ``workflow`` with ``input`` (default: this node's
    input). In ``sync`` mode the node waits and outputs the child's output; in
    ``fire_and_forget`` mode it outputs the child's id at once.

    With ``batch_mode: single``, one child per item of ``items`` (default: this
    node's input, which must then be a list), at most ``concurrency`` at once; the
    node outputs their outputs (or ids) in item order."""
    params: ExecuteParams = ctx.params
    if not params.workflow.strip():
        raise NodeError(f"the workflow parameter is empty: {_NO_WORKFLOW}", code="invalid_params")
    if params.mode not in MODES:
        raise NodeError(
            f"mode must be 'sync' or 'fire_and_forget', not {params.mode!r}",
            code="invalid_params",
        )
    items = None
    if params.batch_mode is not None:
        if params.batch_mode not in BATCH_MODES:
            raise NodeError(_batch_mode_problem(params.batch_mode), code="invalid_params")
        if not _positive(params.concurrency):
            raise NodeError(_concurrency_problem(params.concurrency), code="invalid_params")
        items = ctx.input if params.items is None else params.items
        if not isinstance(items, list):
            where = "the node's input" if params.items is None else "items"
            raise NodeError(
                f"batch_mode 'single' starts one child per item of a list, but {where} is "
                f"{_kind(items)}: give a list as items (or as the node's input)",
                code="invalid_params",
            )
    return ExecuteWorkflow(
        workflow=params.workflow,
        version=params.version,
        input=ctx.input if params.input is None else params.input,
        mode=params.mode,
        trigger=params.trigger,
        items=items,
        concurrency=params.concurrency,
    )


def _kind(value: Any) -> str:
    if value is None:
        return "empty (null)"
    names = {dict: "an object", str: "a string", bool: "a boolean", int: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")


SUBWORKFLOW_ACTIONS: tuple[Action, ...] = tuple(_registry[name] for name in _registry)
