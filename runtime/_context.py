"""What an action receives (:class:`NodeContext`) and may return (:class:`Output`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ._model import DEFAULT_PORT
from ._records import Suspension


def _with_tuples(deliveries: Mapping[str, Sequence[Any]]) -> dict[str, tuple[Any, ...]]:
    return {port: tuple(values) for port, values in deliveries.items()}


@attrs.frozen(kw_only=True, repr=False)
class NodeContext:
    """Everything an action needs to do its work for one run of one node.

    ``params`` are the node's parameters with their templates rendered (an instance of
    the action's params class when it declares one). ``input`` is the data on port
    ``main`` and ``inputs`` maps every input port to its data; a port that received
    data from several connections holds the list of it, in connection order.
    ``node_context`` is this node's persistent context (a loop's cursor, say); return
    ``Output(..., node_context=...)`` to change it. ``vars`` are the workflow variables.
    ``loop_back`` is true when this run was started by a loop-back connection, that
    is, it is a further iteration of the loop this node heads. ``now`` is the engine
    clock's time (seconds since the epoch) when the node was dispatched: use it rather
    than the system clock, so that tests with a virtual clock see virtual time.

    An action may change what it reads from its context in place: unless it promises
    not to (``isolate_inputs=False``), the engine gives it a context made with
    ``copy_on_read``, which copies each of the data fields (``params``, ``input``,
    ``inputs``, ``deliveries``, ``vars``, ``node_context``, ``trigger``) the first
    time it is read, each on its own, so that the copy is the action's and a field it
    never reads costs nothing.
    """

    execution_id: str
    workflow_id: str
    node_key: str
    node_type: str
    run_index: int
    attempt: int = 1
    _params: Any = attrs.field(factory=dict, alias="params")
    _input: Any = attrs.field(default=None, alias="input")
    _inputs: Mapping[str, Any] = attrs.field(factory=dict, alias="inputs")
    _vars: Mapping[str, Any] = attrs.field(factory=dict, alias="vars")
    _node_context: Mapping[str, Any] = attrs.field(factory=dict, alias="node_context")
    _trigger: Any = attrs.field(default=None, alias="trigger")
    loop_back: bool = False
    _deliveries: Mapping[str, tuple[Any, ...]] = attrs.field(factory=dict, alias="deliveries")
    now: float = 0.0
    _copy: Callable[[Any], Any] | None = attrs.field(
        default=None, alias="copy_on_read", eq=False, repr=False
    )
    _copies: dict[str, Any] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @staticmethod
    def inputs_from(deliveries: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
        """``inputs`` from ``deliveries``: a port fed by one connection holds its data,
        a port fed by several holds the list of it, in connection order."""
        return {
            port: values[0] if len(values) == 1 else list(values)
            for port, values in deliveries.items()
        }

    @property
    def copies_on_read(self) -> bool:
        """Whether the data fields are copied when first read (``copy_on_read``)."""
        return self._copy is not None

    def copying_on_read(self, copy: Callable[[Any], Any]) -> NodeContext:
        """This context, with its data fields copied with ``copy`` when first read."""
        return NodeContext(
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            node_key=self.node_key,
            node_type=self.node_type,
            run_index=self.run_index,
            attempt=self.attempt,
            params=self._params,
            input=self._input,
            inputs=self._inputs,
            vars=self._vars,
            node_context=self._node_context,
            trigger=self._trigger,
            loop_back=self.loop_back,
            deliveries=self._deliveries,
            now=self.now,
            copy_on_read=copy,
        )

    def _own(self, name: str, value: Any, shape: Callable[[Any], Any] | None = None) -> Any:
        """``value``, this context's field ``name``, as the action may keep it (copied
        the first time, then that copy; made into ``shape`` if it is a copy)."""
        copy = self._copy
        if copy is None:
            return value
        copies = self._copies
        if copies is None:
            copies = {}
            object.__setattr__(self, "_copies", copies)  # a cache: the fields are as given
        try:
            return copies[name]
        except KeyError:
            own = copy(value)
            if shape is not None and own is not value:
                own = shape(own)
            copies[name] = own
            return own

    @property
    def params(self) -> Any:
        params = self._params
        if self._copy is None or not isinstance(params, (Mapping, list)):
            return params  # an instance of a params class is the action's to read
        return self._own("params", params)

    @property
    def input(self) -> Any:
        return self._input if self._copy is None else self._own("input", self._input)

    @property
    def inputs(self) -> Mapping[str, Any]:
        return self._inputs if self._copy is None else self._own("inputs", self._inputs)

    @property
    def deliveries(self) -> Mapping[str, tuple[Any, ...]]:
        deliveries = self._deliveries
        return (
            deliveries if self._copy is None else self._own("deliveries", deliveries, _with_tuples)
        )

    @property
    def vars(self) -> Mapping[str, Any]:
        return self._vars if self._copy is None else self._own("vars", self._vars)

    @property
    def node_context(self) -> Mapping[str, Any]:
        context = self._node_context
        return context if self._copy is None else self._own("node_context", context)

    @property
    def trigger(self) -> Any:
        return self._trigger if self._copy is None else self._own("trigger", self._trigger)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{field.alias}={getattr(self, field.name)!r}"
            for field in attrs.fields(NodeContext)
            if field.repr
        )
        return f"NodeContext({shown})"

    @property
    def idempotency_key(self) -> str:
        """``execution_id:node_key:run_index``: the same for every attempt and re-run.

        A node that was running when its process died runs again with the same key,
        so an action can use it to make its side effects happen once.
        """
        return f"{self.execution_id}:{self.node_key}:{self.run_index}"

    def input_list(self, port: str = DEFAULT_PORT) -> list[Any]:
        """The data delivered on ``port``, always as a list, one entry per connection.

        Unlike :attr:`inputs`, a port that received data from one connection gives a
        list of one item, so code that joins branches need not tell the cases apart.
        """
        return list(self.deliveries.get(port, ()))


@attrs.frozen
class Output:
    """What an action returns to choose its port or update state.

    ``Output(data)`` sends ``data`` on the action's default port; ``port=`` chooses
    another. ``node_context=`` replaces this node's persistent context and ``vars=``
    updates workflow variables (keys given are set, others are kept). An action may
    also return a plain value, which goes to its default port.
    """

    data: Any = None
    port: str | None = attrs.field(default=None, kw_only=True)
    node_context: Mapping[str, Any] | None = attrs.field(default=None, kw_only=True)
    vars: Mapping[str, Any] | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(kw_only=True)
class Suspend:
    """What an action returns to wait instead of completing (DESIGN §5.5).

    The node stays suspended while the rest of the execution goes on; when nothing
    else can run, the execution is saved and leaves memory. It completes:

    * when resumed (``engine.resume`` or, with ``token=True``, ``engine.resume_token``)
      with the resume data, on ``resume_port`` (default: the action's default port);
    * when ``wake_at`` (seconds since the epoch) passes, with ``wake_data`` on
      ``wake_port`` (default: the action's default port).

    ``kind`` names the wait for people and tools (``interval``, ``until``,
    ``webhook``...). ``token=True`` asks the engine for an unguessable resume token.
    ``data`` is what whoever answers the wait needs to know (an approval's prompt, a
    form's fields): JSON data, kept with the wait, shown by ``prana show`` and carried
    by the ``NodeSuspended`` event and ``Execution.suspensions``.
    """

    kind: str
    wake_at: float | None = None
    wake_port: str | None = None
    wake_data: Any = None
    resume_port: str | None = None
    token: bool = False
    data: Any = None


@attrs.frozen(kw_only=True)
class Resume:
    """What an action's resume step (``on_resume``) is given when its waiting node is
    resumed: the ``data`` it was resumed with, the wait (``suspension``: its kind, its
    own ``data``, its token), the run, the parameters it was given as its record keeps
    them (``params``: rendered, JSON data; see ``Limits.recorded_params``), the
    workflow variables and the node's context.

    The step returns what the node outputs (a value, on the wait's resume port, or an
    :class:`Output`), or a :class:`Suspend` to wait again; it raises
    :class:`NodeError` to fail the node, or :class:`ResumeRefused` to refuse the data
    (the node still waits, and whoever resumed it gets the error).
    """

    execution_id: str
    workflow_id: str
    node_key: str
    run_index: int
    attempt: int
    data: Any
    suspension: Suspension
    params: Any = None
    vars: Mapping[str, Any] = attrs.field(factory=dict)
    node_context: Mapping[str, Any] = attrs.field(factory=dict)
    now: float = 0.0
