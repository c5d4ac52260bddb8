"""Node workers: one task per run of an async action (DESIGN §7); a plain function
is called by its supervisor with :func:`call_now` (decision 0022).

A worker calls the action, turns what it returned (or raised) into a
:class:`NodeResult` and sends it to its supervisor over the supervisor's memory
channel. It never touches execution state. Outputs are copied through JSON, which
both checks that they are JSON values and keeps one node from mutating the data
another node received.
"""

from __future__ import annotations

import inspect
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import orjson

from prana._commands import Dispatch
from prana._context import NodeContext, Output, Resume, Suspend
from prana._errors import NodeError, ResumeRefused
from prana._json import SCALARS, InvalidData, check_json
from prana._machine import ExecutionMachine
from prana._records import ErrorInfo, NodeResult, SuspendRequest
from prana._subworkflows import ExecuteWorkflow

from ._clock import Clock

_CONTAINERS = frozenset((dict, list, tuple, MappingProxyType))
StartChild = Callable[[Dispatch, ExecuteWorkflow], Awaitable[str]]
RunChildren = Callable[[Dispatch, ExecuteWorkflow, "float | None"], Awaitable[list[Any]]]


@attrs.frozen
class Children:
    """How a worker starts what an action that returned :class:`ExecuteWorkflow`
    asks for: one child (``start``: its id, once saved), or one per item
    (``run_batch``: their outputs, or ids, in item order; it fails the node as a
    child fails, or once the deadline given passes)."""

    start: StartChild
    run_batch: RunChildren


_TRACEBACK_LIMIT = 4000


class _OutputNotJson(Exception):
    pass


def _encode_mapping(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _json_copy(value: Any, what: str, dispatch: Dispatch) -> Any:
    """What an action gave, as the engine keeps it: a private copy, checked to be JSON
    data within the limits (unless the action promises it is, ``json_output``)."""
    if dispatch.action.json_output:
        return value
    try:
        return check_json(value, what=what, limits=dispatch.limits)
    except InvalidData as exc:
        raise _OutputNotJson(str(exc)) from None


def _shared(value: Any) -> bool:
    """Whether an action could change ``value`` in place (so it needs its own copy)."""
    kind = type(value)
    if kind in SCALARS:
        return False
    if kind in _CONTAINERS:
        return bool(value)
    return not (isinstance(value, (Mapping, list, tuple)) and not value)


# Data of at most this many objects and lists is copied in Python, sharing its strings
# and numbers (they cannot change): for small data that is as fast as anything, and a
# megabyte string in it is not copied at all.
_FEW = 64
# Past that, data is copied by a round trip through orjson, unless it is larger than
# this as JSON: a copy that shares the strings is tried first then.
_SMALL = 64 * 1024
# Copying one object or list in Python costs about what reading this many bytes of
# JSON does: the shared copy is given up for data with more containers than that.
_BYTES_PER_CONTAINER = 600


def _copy(value: Any) -> Any:
    """A private copy of JSON data (mappings become dicts, tuples lists)."""
    try:
        return _sharing_copy(value, _FEW)
    except _TooMany:
        pass
    encoded = orjson.dumps(value, default=_encode_mapping)
    if len(encoded) > _SMALL:
        try:
            return _sharing_copy(value, len(encoded) // _BYTES_PER_CONTAINER)
        except _TooMany:
            pass
    return orjson.loads(encoded)


class _TooMany(Exception):
    pass


def _sharing_copy(value: Any, budget: int) -> Any:
    """A copy of the containers of JSON data that shares its strings and numbers (they
    cannot change), for at most ``budget`` containers; raises :class:`_TooMany` past
    that, or for a subclass of a scalar or a list (copied as the round trip makes it)."""
    left = budget

    def copy(value: Any) -> Any:
        nonlocal left
        kind = type(value)
        left -= 1
        if left < 0:
            raise _TooMany
        if kind is list or kind is tuple:
            return [item if type(item) in SCALARS else copy(item) for item in value]
        if kind is dict or isinstance(value, Mapping):
            return {
                key: item if type(item) in SCALARS else copy(item) for key, item in value.items()
            }
        raise _TooMany

    return value if type(value) in SCALARS else copy(value)


def isolate(context: NodeContext) -> NodeContext:
    """The context whose data the action may change in place: each data field is
    copied the first time the action reads it (:meth:`NodeContext.copying_on_read`,
    with :func:`private_copy`; the engine's state machines make their contexts so).

    Inputs are other nodes' outputs, kept for routing and templates; parameters of a
    node without templates belong to the compiled workflow; the trigger's data is
    every node's ``trigger`` in templates. An action that changes what it was given
    must not change them.
    """
    return context if context.copies_on_read else context.copying_on_read(private_copy)


def private_copy(value: Any) -> Any:
    """``value``, copied if an action could change it in place."""
    return _copy(value) if _shared(value) else value


def answer_resume(
    machine: ExecutionMachine, node_key: str | None, data: Any, clock: Clock
) -> NodeResult | None:
    """What the waiting node's action makes of being resumed with ``data``: ``None``
    if it has no resume step (the data is the output), else the step's outcome as a
    result (an output, an error, or a new wait). Raises what
    :meth:`ExecutionMachine.resumable` raises, and :class:`ResumeRefused` if the step
    refuses the data."""
    now = clock.now()
    suspension, run = machine.resumable(node_key, now)
    node = machine.graph.nodes[suspension.node_key]
    on_resume = node.action.on_resume
    if on_resume is None:
        return None
    workflow_id = machine.graph.workflow.id
    # Private copies of what the execution keeps (the wait, the variables, the
    # node's context): a step that changes what it is given changes nothing else,
    # even when it refuses the data and the node goes on waiting.
    own = suspension.private_copy()
    vars, node_context = _copy([dict(machine.vars), dict(machine.node_context(node.key))])
    resume = Resume(
        execution_id=machine.execution_id,
        workflow_id=workflow_id,
        node_key=node.key,
        run_index=run.run_index,
        attempt=run.attempt,
        data=data,
        suspension=own,
        params=own.params,
        vars=MappingProxyType(vars),
        node_context=node_context,
        now=now,
    )
    context = NodeContext(
        execution_id=machine.execution_id,
        workflow_id=workflow_id,
        node_key=node.key,
        node_type=node.node.type,
        run_index=run.run_index,
        attempt=run.attempt,
        now=now,
    )
    dispatch = Dispatch(run=run, action=node.action, context=context, limits=machine.limits)
    started = time.perf_counter()
    try:
        value = on_resume(resume)
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            raise NodeError(
                f"on_resume of {node.action.name!r} returned an awaitable; it must be a plain "
                "function",
                code="invalid_output",
            )
    except ResumeRefused:
        raise
    except Exception as exc:  # the step's failure is the node's
        return _result(dispatch, clock, now, started, error=error_from_exception(exc))
    return _outcome(dispatch, clock, now, started, value)


def error_from_exception(exc: BaseException) -> ErrorInfo:
    """The recorded error for an exception raised by an action."""
    if isinstance(exc, NodeError):
        return ErrorInfo(code=exc.code, message=str(exc), details=exc.details)
    text = "".join(traceback.format_exception(exc))
    if len(text) > _TRACEBACK_LIMIT:
        text = "...\n" + text[-_TRACEBACK_LIMIT:]
    return ErrorInfo(
        code="action_error",
        message=f"{type(exc).__name__}: {exc}",
        details={
            "exception": _class_name(type(exc)),
            # The class and its bases, for settings.retry.retry_on.
            "exception_types": [
                _class_name(cls)
                for cls in type(exc).__mro__
                if cls not in (object, BaseException, Exception)
            ],
            "traceback": text,
        },
    )


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@attrs.frozen
class Called:
    """A synchronous action called on the spot that returned something a worker must
    finish: an awaitable, or a child workflow to start."""

    value: Any
    started_at: float
    started: float


def call_now(dispatch: Dispatch, clock: Clock) -> NodeResult | Called:
    """Call a synchronous action (not ``is_async``, no ``not_before``) on the spot.

    Returns its result, or :class:`Called` when it returned an awaitable or a child
    workflow to start: a worker finishes those (:func:`call_action`). A synchronous
    action cannot be cancelled or timed out in a worker either (it never yields), so
    calling it here changes nothing but the cost of a task.
    """
    started_at = clock.now()
    started = time.perf_counter()
    action = dispatch.action
    try:
        context = isolate(dispatch.context) if action.isolate_inputs else dispatch.context
        value = action.function(context)
    except Exception as exc:  # an action's failure is data for the state machine
        return _result(dispatch, clock, started_at, started, error=error_from_exception(exc))
    if _unfinished(value):
        if action.pure:
            return _result(
                dispatch, clock, started_at, started, error=_not_pure(action.name, value)
            )
        return Called(value, started_at, started)
    return _outcome(dispatch, clock, started_at, started, value)


def _unfinished(value: Any) -> bool:
    """Whether an action's return value is work a worker must still do: an awaitable
    to await, or a child workflow to start."""
    return isinstance(value, ExecuteWorkflow) or inspect.isawaitable(value)


def _not_pure(name: str, value: Any) -> ErrorInfo:
    """The error of a pure action that returned work still to do (an awaitable, a
    child workflow to start): a pure action's outcome is what it returns, and running
    it again after a crash must change nothing, so that work is not done."""
    if inspect.iscoroutine(value):
        value.close()  # never awaited: no warning about it either
    child = isinstance(value, ExecuteWorkflow)
    what, then = (
        ("a child workflow to start", "start it") if child else ("an awaitable", "await it")
    )
    return ErrorInfo(
        code="invalid_output",
        message=f"action {name!r} is registered pure=True but returned {what} "
        f"({type(value).__name__}), which a pure action may not do: it must return its "
        f"outcome; register it without pure=True to have the engine {then}",
    )


async def call_action(
    dispatch: Dispatch,
    clock: Clock,
    children: Children | None = None,
    called: Called | None = None,
) -> NodeResult:
    """Run one action now (within ``dispatch.timeout``) and describe the outcome;
    never raises except on cancellation. ``called`` carries on an action
    :func:`call_now` began.

    An action that returns :class:`prana.ExecuteWorkflow` has ``children`` start the
    child execution (it returns once the child is saved); the node then waits for
    the child (``sync``) or completes with its id (``fire_and_forget``). With items,
    ``children`` runs the batch and the node completes with what it gives.
    """
    if called is None:
        started_at, started = clock.now(), time.perf_counter()
    else:
        started_at, started = called.started_at, called.started
    try:
        if called is None:
            action = dispatch.action
            context = isolate(dispatch.context) if action.isolate_inputs else dispatch.context
            value = action.function(context)
            if action.pure and _unfinished(value):
                error = _not_pure(action.name, value)
                return _result(dispatch, clock, started_at, started, error=error)
        else:
            value = called.value
        if inspect.isawaitable(value):
            if dispatch.timeout is None:
                value = await value
            else:
                with clock.cancel_at(started_at + dispatch.timeout) as scope:
                    value = await value
                if scope.cancelled_caught:
                    error = ErrorInfo(
                        code="timeout",
                        message=f"node {dispatch.run.node_key!r} ran longer than its timeout "
                        f"({dispatch.timeout:g} s) and was cancelled",
                        details={"timeout": dispatch.timeout},
                    )
                    return _result(dispatch, clock, started_at, started, error=error)
        if isinstance(value, ExecuteWorkflow):
            if children is None:
                raise NodeError(
                    "this engine cannot start child executions here", code="invalid_output"
                )
            until = None if dispatch.timeout is None else started_at + dispatch.timeout
            if value.items is not None:
                items = _json_copy(list(value.items), "the items", dispatch)
                value = await children.run_batch(
                    dispatch, attrs.evolve(value, items=items, input=None), until
                )
                return _outcome(dispatch, clock, started_at, started, value)
            request = attrs.evolve(
                value, input=_json_copy(value.input, "the child's input", dispatch)
            )
            child_id = await children.start(dispatch, request)
            if value.mode == "sync":
                # The node's timeout bounds its wait for the child, too.
                suspend = SuspendRequest(
                    kind="workflow", child_execution_id=child_id, wake_at=until
                )
                return _result(dispatch, clock, started_at, started, suspend=suspend)
            value = {"execution_id": child_id, "workflow": value.workflow}
    except _OutputNotJson as exc:
        error = ErrorInfo(code="invalid_output", message=str(exc))
        return _result(dispatch, clock, started_at, started, error=error)
    except Exception as exc:  # an action's failure is data for the state machine
        return _result(dispatch, clock, started_at, started, error=error_from_exception(exc))
    return _outcome(dispatch, clock, started_at, started, value)


def _outcome(
    dispatch: Dispatch, clock: Clock, started_at: float, started: float, value: Any
) -> NodeResult:
    """The result of an action that returned ``value``."""
    try:
        if isinstance(value, Suspend):
            suspend = SuspendRequest(
                kind=value.kind,
                wake_at=value.wake_at,
                wake_port=value.wake_port,
                wake_data=_json_copy(value.wake_data, "Suspend.wake_data", dispatch),
                resume_port=value.resume_port,
                # A prefix: a token never starts with "-", which reads as an option.
                token=f"wh_{secrets.token_urlsafe(24)}" if value.token else None,
                data=_json_copy(value.data, "Suspend.data", dispatch),
            )
            return _result(dispatch, clock, started_at, started, suspend=suspend)
        if isinstance(value, Output):
            return _result(
                dispatch,
                clock,
                started_at,
                started,
                port=value.port,
                data=_shaped(value.data, dispatch),
                node_context=None
                if value.node_context is None
                else _json_copy(dict(value.node_context), "Output.node_context", dispatch),
                vars=None
                if value.vars is None
                else _json_copy(dict(value.vars), "Output.vars", dispatch),
            )
        data = _shaped(value, dispatch)
        return _result(dispatch, clock, started_at, started, data=data)
    except _OutputNotJson as exc:
        error = ErrorInfo(code="invalid_output", message=str(exc))
        return _result(dispatch, clock, started_at, started, error=error)


def _shaped(value: Any, dispatch: Dispatch) -> Any:
    """The output as the engine keeps it (see :func:`_json_copy`), checked against the
    shape its action declares (an instance of a declared attrs class becomes its
    fields). Raises :class:`_OutputNotJson` if it does not fit."""
    shape = dispatch.action.fixed_output_shape
    if shape is not None and shape.cls is not None and isinstance(value, shape.cls):
        instance: Any = value
        value = attrs.asdict(instance)
    data = _json_copy(value, "the output", dispatch)
    if shape is not None:
        problem = shape.problem(data)
        if problem is not None:
            raise _OutputNotJson(
                f"the output does not have the shape {dispatch.action.name!r} declares: {problem}"
            )
    return data


def _result(
    dispatch: Dispatch,
    clock: Clock,
    started_at: float,
    started: float,
    **outcome: Any,
) -> NodeResult:
    run = dispatch.run
    duration_ms = (time.perf_counter() - started) * 1000.0
    return NodeResult(
        node_key=run.node_key,
        run_index=run.run_index,
        execution_index=run.execution_index,
        attempt=run.attempt,
        started_at=started_at,
        finished_at=clock.now(),
        duration_ms=duration_ms,
        **outcome,
    )
