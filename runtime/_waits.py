"""The built-in waits: ``wait.interval``, ``wait.until`` and ``wait.webhook``.

A wait suspends its node (DESIGN §5.5). Timers are wall-clock deadlines kept with the
execution, so a wait survives a restart, and one whose deadline passed while no
process ran fires as soon as an engine starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from ._context import NodeContext, Suspend
from ._cron import parse_cron
from ._errors import NodeError, Problem
from ._expressions import contains_template
from ._registry import Action, ActionRegistry, F
from ._time import parse_datetime, parse_duration

_registry = ActionRegistry(builtins=False)


def action(name: str, **options: Any) -> Callable[[F], F]:
    """Register a built-in wait: it never changes its input in place."""
    return _registry.action(name, isolate_inputs=False, json_output=True, **options)


def _duration(value: object, name: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise NodeError(f"{name}: {exc}", code="invalid_params") from None


def _check(name: str, parse: Any) -> Any:
    def check(params: Mapping[str, Any]) -> Iterable[Problem]:
        value = params.get(name)
        if value is not None and not contains_template(value):
            try:
                parse(value)
            except ValueError as exc:
                yield Problem(path=name, message=str(exc))

    return check


@attrs.frozen(kw_only=True)
class IntervalParams:
    """Parameters of ``wait.interval``."""

    duration: Any


@action(
    "wait.interval",
    params=IntervalParams,
    check=_check("duration", parse_duration),
    description="Wait for a duration (90s, 2h, 3d); then pass the input on",
)
def wait_interval(ctx: NodeContext) -> Suspend:
    """Waits ``duration`` from now, then outputs its input."""
    params: IntervalParams = ctx.params
    seconds = _duration(params.duration, "duration")
    return Suspend(kind="interval", wake_at=ctx.now + seconds, wake_data=ctx.input)


@attrs.frozen(kw_only=True)
class UntilParams:
    """Parameters of ``wait.until``: a moment ``at``, or the next time of a ``cron``
    expression in ``timezone``."""

    at: Any = None
    cron: Any = None
    timezone: Any = "UTC"


def _check_until(params: Mapping[str, Any]) -> Iterable[Problem]:
    if ("at" in params) == ("cron" in params):
        yield Problem(path="at", message="give either 'at' (a moment) or 'cron' (an expression)")
        return
    yield from _check("at", parse_datetime)(params)
    cron, timezone = params.get("cron"), params.get("timezone", "UTC")
    if cron is not None and not contains_template(cron) and not contains_template(timezone):
        try:
            parse_cron(cron, timezone)
        except ValueError as exc:
            yield Problem(path="cron", message=str(exc))


@action(
    "wait.until",
    params=UntilParams,
    check=_check_until,
    description="Wait until a moment (ISO datetime with timezone) or the next cron time; "
    "then pass the input on",
)
def wait_until(ctx: NodeContext) -> Suspend:
    """Waits until ``at`` (a moment already past goes on at once) or the next time
    ``cron`` matches after now, then outputs its input."""
    params: UntilParams = ctx.params
    try:
        if params.cron is not None:
            moment = parse_cron(params.cron, params.timezone).next_after(ctx.now)
        else:
            moment = parse_datetime(params.at)
    except ValueError as exc:
        which = "cron" if params.cron is not None else "at"
        raise NodeError(f"{which}: {exc}", code="invalid_params") from None
    return Suspend(kind="until", wake_at=moment, wake_data=ctx.input)


@attrs.frozen(kw_only=True)
class WebhookParams:
    """Parameters of ``wait.webhook``."""

    timeout: Any = None
    data: Any = None


@action(
    "wait.webhook",
    outputs=("main", "timeout"),
    params=WebhookParams,
    check=_check("timeout", parse_duration),
    description="Wait to be resumed by token; the resume data goes out on 'main', or the input on 'timeout'",
)
def wait_webhook(ctx: NodeContext) -> Suspend:
    """Waits for ``engine.resume_token(token, data)`` (the token is in the execution's
    ``suspensions``); the data goes out on ``main``. With ``timeout``, if nobody
    resumes it in time, the input goes out on ``timeout`` instead. ``data`` is kept
    with the wait for whoever answers it (a prompt, a form's fields).
    """
    params: WebhookParams = ctx.params
    wake_at = None
    if params.timeout is not None:
        wake_at = ctx.now + _duration(params.timeout, "timeout")
    return Suspend(
        kind="webhook",
        token=True,
        wake_at=wake_at,
        wake_port="timeout",
        wake_data=ctx.input,
        data=params.data,
    )


WAIT_ACTIONS: tuple[Action, ...] = tuple(_registry[name] for name in _registry)
