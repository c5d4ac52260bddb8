"""Actions and the registry that names them.

An action is a callable (``async def`` or plain ``def``) taking a
:class:`NodeContext`, registered under a name with its input and output ports. Ports
are fixed tuples, or computed from the node's parameters (``logic.switch`` has one
port per case). A params class (an attrs class) lets the compiler check parameters
before anything runs and gives the action typed, rendered parameters.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import attrs

from ._context import NodeContext, Resume
from ._errors import Problem, did_you_mean
from ._model import DEFAULT_PORT
from ._shapes import OutputShape, OutputSpec, shape_of

PortSpec = Sequence[str] | Callable[[Mapping[str, Any]], Sequence[str]]
JoinSpec = Literal["all", "any"] | Callable[[Mapping[str, Any]], str]
ActionFunction = Callable[[NodeContext], Any]
F = TypeVar("F", bound=ActionFunction)

ACTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
TRIGGER_KINDS = ("manual", "webhook", "schedule", "function", "event")


@attrs.frozen(kw_only=True)
class Action:
    """A registered action: its function, ports, parameters and role.

    A plain return (not an :class:`Output` naming a port) goes to ``default_port``,
    the first output port unless given. ``trigger`` is the trigger kind for trigger
    actions (``manual``, ``webhook``,
    ``schedule``, ``function``) and ``None`` for the rest. ``join`` says whether the
    node waits for all its inputs (``all``, the default) or runs on the first one to
    arrive (``any``). ``check`` returns extra problems with parameters that the
    params class cannot express. ``render_on_loop_back=False`` renders parameters only
    when the node is entered from outside its loop; a loop-back run gets
    ``ctx.params = None`` and works from its node context (``core.for_each`` does this,
    since its ``items`` template refers to data from before the loop). For a loop
    entry, output on ``collect_port`` is replaced by the list of what came back on its
    loop-back connections, one entry per iteration (``core.for_each``'s ``done``): the
    engine builds it from the audit trail, so nothing grows in the node's context.
    ``isolate_inputs=False`` promises that the action never changes the data it is
    given in place, so the engine need not copy it first (the built-ins promise it).
    ``on_resume``, for an action that waits, is its resume step: a plain function
    called with a :class:`prana.Resume` when its waiting node is resumed, whose
    outcome replaces the resume data as the node's (see :class:`prana.Resume`).
    ``output`` declares the shape of its outputs (an attrs class, a ``TypedDict``, a
    JSON schema of an object, or a function of a node's parameters giving one): a
    template reading a field it does not have is refused when the workflow loads,
    and an output that does not fit it fails the node (:mod:`prana._shapes`).
    ``json_output=True`` promises that what it outputs is made only of data the
    engine checked already (its input, its rendered parameters), so the engine need
    not check it again (the built-ins promise it too); otherwise every output is
    checked to be JSON data (:mod:`prana._json`) and copied.
    ``pure=True`` promises that a plain (not ``async``) function does nothing but
    work out its outcome: no I/O, no change to anything outside it. The engine may
    then run the pure nodes after it before its result is saved, and save them all
    in one checkpoint, before any node that is not pure runs (decision 0069); a crash
    before that checkpoint runs them again, which nobody can tell. Most built-ins are
    pure (not ``core.log``, the waits, ``webhook.respond`` or ``workflow.execute``).
    """

    name: str
    function: ActionFunction
    inputs: PortSpec = (DEFAULT_PORT,)
    outputs: PortSpec = (DEFAULT_PORT,)
    default_port: str | None = None
    params: type | None = None
    trigger: str | None = None
    join: JoinSpec = "all"
    check: Callable[[Mapping[str, Any]], Iterable[Problem]] | None = None
    render_on_loop_back: bool = True
    collect_port: str | None = None
    isolate_inputs: bool = True
    json_output: bool = False
    pure: bool = False
    description: str = ""
    on_resume: Callable[[Resume], Any] | None = None
    output: OutputSpec | None = None
    is_async: bool = attrs.field(default=False)
    # The shape every output must have, worked out from ``output`` once, when the
    # action is registered (None for none, or one that depends on the parameters).
    fixed_output_shape: OutputShape | None = attrs.field(default=None)

    def input_ports(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The input ports of a node of this action with these parameters."""
        if self.trigger is not None:
            return ()
        ports = self.inputs(params) if callable(self.inputs) else self.inputs
        return tuple(ports)

    def output_ports(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The output ports of a node of this action with these parameters."""
        ports = self.outputs(params) if callable(self.outputs) else self.outputs
        return tuple(ports)

    def output_shape(self, params: Mapping[str, Any]) -> OutputShape | None:
        """The shape of the output of a node of this action with these parameters, if
        known (see :mod:`prana._shapes`)."""
        output = self.output
        if output is not None and _of_params(output):
            return shape_of(output(params))  # type: ignore[operator]
        return self.fixed_output_shape

    def default_port_of(self, params: Mapping[str, Any]) -> str:
        """Where a plain return goes for a node of this action with these parameters:
        ``default_port``, else the first output port."""
        if self.default_port is not None:
            return self.default_port
        ports = self.output_ports(params)
        return ports[0] if ports else DEFAULT_PORT

    def join_mode(self, params: Mapping[str, Any]) -> str:
        """``all`` or ``any`` for a node of this action with these parameters."""
        return self.join(params) if callable(self.join) else self.join


class ActionRegistry:
    """Names actions. A new registry holds every built-in action; add yours with
    :meth:`action`.

    ``ActionRegistry(builtins=False)`` starts empty.
    """

    def __init__(self, *, builtins: bool = True) -> None:
        self._actions: dict[str, Action] = {}
        if builtins:
            from ._builtins import BUILTIN_ACTIONS

            self._actions.update((action.name, action) for action in BUILTIN_ACTIONS)

    def action(
        self,
        name: str,
        *,
        inputs: PortSpec = (DEFAULT_PORT,),
        outputs: PortSpec = (DEFAULT_PORT,),
        default_port: str | None = None,
        params: type | None = None,
        trigger: str | None = None,
        join: JoinSpec = "all",
        check: Callable[[Mapping[str, Any]], Iterable[Problem]] | None = None,
        render_on_loop_back: bool = True,
        collect_port: str | None = None,
        isolate_inputs: bool = True,
        json_output: bool = False,
        pure: bool = False,
        description: str = "",
        on_resume: Callable[[Resume], Any] | None = None,
        output: OutputSpec | None = None,
        replace: bool = False,
    ) -> Callable[[F], F]:
        """Register the decorated function as the action ``name``; return it unchanged.

        Raises ``ValueError`` if the name is malformed or already registered (pass
        ``replace=True`` to override a built-in on purpose).
        """

        def decorator(function: F) -> F:
            self.add(
                Action(
                    name=name,
                    function=function,
                    inputs=inputs,
                    outputs=outputs,
                    default_port=default_port,
                    params=params,
                    trigger=trigger,
                    join=join,
                    check=check,
                    render_on_loop_back=render_on_loop_back,
                    collect_port=collect_port,
                    isolate_inputs=isolate_inputs,
                    json_output=json_output,
                    pure=pure,
                    description=description or (inspect.getdoc(function) or "").split("\n")[0],
                    on_resume=on_resume,
                    output=output,
                ),
                replace=replace,
            )
            return function

        return decorator

    def add(self, action: Action, *, replace: bool = False) -> None:
        """Register an :class:`Action`. Raises ``ValueError`` as :meth:`action` does."""
        if not ACTION_NAME.match(action.name):
            raise ValueError(f"action name {action.name!r} must be dotted words like 'shop.charge'")
        if action.name in self._actions and not replace:
            raise ValueError(
                f"action {action.name!r} is already registered; pass replace=True to override it"
            )
        if action.trigger is not None and action.trigger not in TRIGGER_KINDS:
            raise ValueError(
                f"trigger kind {action.trigger!r} of {action.name!r} must be one of "
                f"{', '.join(TRIGGER_KINDS)}"
            )
        if (
            action.default_port is not None
            and not callable(action.outputs)
            and action.default_port not in action.outputs
        ):
            raise ValueError(
                f"default_port {action.default_port!r} of {action.name!r} is not one of its "
                f"outputs ({', '.join(action.outputs) or 'none'}); leave it out to use the "
                "first output"
            )
        if action.params is not None and not attrs.has(action.params):
            raise ValueError(f"params of {action.name!r} must be an attrs class")
        if not callable(action.function):
            raise ValueError(f"action {action.name!r} needs a callable")
        fixed_shape = None
        if not _of_params(action.output):
            try:
                fixed_shape = shape_of(action.output)
            except ValueError as exc:
                raise ValueError(f"output of {action.name!r}: {exc}") from None
        if action.on_resume is not None and (
            not callable(action.on_resume) or inspect.iscoroutinefunction(action.on_resume)
        ):
            raise ValueError(
                f"on_resume of {action.name!r} must be a plain function: it runs as the resume "
                "is applied (do asynchronous work in the nodes after it)"
            )
        function = action.function
        is_async = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
            getattr(function, "__call__", None)  # noqa: B004 - async callable objects
        )
        if is_async and action.pure:
            raise ValueError(
                f"action {action.name!r} is async, so it cannot be pure: a pure action is a "
                "plain function that only works out its outcome (leave pure out, or make it "
                "a plain def)"
            )
        self._actions[action.name] = attrs.evolve(
            action, is_async=is_async, fixed_output_shape=fixed_shape
        )

    def get(self, name: str) -> Action | None:
        """The action registered as ``name``, or ``None``."""
        return self._actions.get(name)

    def __getitem__(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            raise KeyError(f"unknown action {name!r}{did_you_mean(name, self._actions)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._actions))

    def __len__(self) -> int:
        return len(self._actions)

    def copy(self) -> ActionRegistry:
        """A registry with the same actions, to extend without changing this one."""
        other = ActionRegistry(builtins=False)
        for action in self._actions.values():
            other.add(action)
        return other


def _of_params(spec: object) -> bool:
    """Whether an ``output=`` declaration is a function of a node's parameters (not a
    class or a schema)."""
    return callable(spec) and not isinstance(spec, type)
