"""What an action receives (:class:`NodeContext`) and may return (:class:`Output`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._model import DEFAULT_PORT
from ._records import Suspension


@attrs.frozen(kw_only=True)
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
    """

    execution_id: str
    workflow_id: str
    node_key: str
    node_type: str
    run_index: int
    attempt: int = 1
    params: Any = attrs.field(factory=dict)
    input: Any = None
    inputs: Mapping[str, Any] = attrs.field(factory=dict)
    vars: Mapping[str, Any] = attrs.field(factory=dict)
    node_context: Mapping[str, Any] = attrs.field(factory=dict)
    trigger: Any = None
    loop_back: bool = False
    deliveries: Mapping[str, tuple[Any, ...]] = attrs.field(factory=dict)
    now: float = 0.0

    @staticmethod
    def inputs_from(deliveries: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
        """``inputs`` from ``deliveries``: a port fed by one connection holds its data,
        a port fed by several holds the list of it, in connection order."""
        return {
            port: values[0] if len(values) == 1 else list(values)
            for port, values in deliveries.items()
        }

    def with_data(
        self,
        *,
        params: Any,
        deliveries: Mapping[str, tuple[Any, ...]],
        vars: Mapping[str, Any],
        node_context: Mapping[str, Any],
        trigger: Any,
    ) -> NodeContext:
        """The same context with other data (the private copies a worker makes);
        ``input`` and ``inputs`` follow from ``deliveries``."""
        inputs = NodeContext.inputs_from(deliveries)
        return NodeContext(
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            node_key=self.node_key,
            node_type=self.node_type,
            run_index=self.run_index,
            attempt=self.attempt,
            params=params,
            input=inputs.get(DEFAULT_PORT),
            inputs=inputs,
            vars=vars,
            node_context=node_context,
            trigger=trigger,
            loop_back=self.loop_back,
            deliveries=deliveries,
            now=self.now,
        )

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
