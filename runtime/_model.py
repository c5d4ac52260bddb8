"""The workflow model: what a user writes in a workflow file (DESIGN §3).

Definitions are frozen attrs classes. They hold no behaviour and import no
serialization library: loading and validation live in ``_loading``.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

OnError = Literal["stop", "continue", "error_port"]
ON_ERROR_CHOICES: tuple[str, ...] = ("stop", "continue", "error_port")
Backoff = Literal["fixed", "exponential"]
BACKOFF_CHOICES: tuple[str, ...] = ("fixed", "exponential")

DEFAULT_PORT = "main"
ERROR_PORT = "error"


@attrs.frozen(kw_only=True)
class RetrySettings:
    """How a failing node is tried again.

    ``max_attempts`` counts every attempt, the first included. Before attempt ``n + 1``
    the node waits ``delay`` seconds (``fixed``) or ``delay * 2 ** (n - 1)``
    (``exponential``), at most ``max_delay`` (no limit when unset); ``jitter`` (0 to 1) takes up to that
    fraction off each wait, so that many executions do not retry in step.
    ``retry_on`` limits retries to errors with these codes (``timeout``,
    ``action_error``, a :class:`prana.NodeError` code) or raised as exceptions of
    these classes (by name, base classes included); empty means every error.
    Durations are seconds, or text such as ``500ms``, ``30s``, ``2m``.
    """

    max_attempts: int = 3
    backoff: Backoff = "exponential"
    delay: float = 1.0
    max_delay: float | None = None
    jitter: float = 0.0
    retry_on: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class NodeSettings:
    """Per-node settings.

    ``on_error`` says what a failure of this node does: ``stop`` fails the execution,
    ``continue`` makes the error the node's output on its default port, ``error_port``
    routes the error to the node's ``error`` port. ``None`` takes the workflow's default.
    ``retry`` tries a failing node again first (see :class:`RetrySettings`);
    ``timeout`` (seconds, or text such as ``30s``) cancels a run that takes longer and
    fails it with the error code ``timeout``.
    """

    on_error: OnError | None = None
    retry: RetrySettings | None = None
    timeout: float | None = None


@attrs.frozen(kw_only=True)
class WorkflowSettings:
    """Per-workflow settings.

    ``max_iterations`` bounds the loop iterations of one execution, ``concurrency`` how
    many ready nodes may run at once (1 keeps branch-following order), ``on_error`` is
    the default for nodes that do not set their own. ``timeout`` (seconds, or text
    such as ``1h``) is a durable deadline: an execution still going that long after
    it started ends ``timed_out``.

    ``concurrency_key`` (a template over ``input``, ``trigger`` and ``env``, such as
    ``"{{ input.customer }}"``) puts every execution in a queue first: at most
    ``concurrency_limit`` executions with the same key are in progress (running,
    waiting or paused) at once, across every engine on the store; the others stay
    ``queued`` until one ends. ``priority``: among queued executions, higher first
    (then the oldest first).
    """

    max_iterations: int = 10_000
    concurrency: int = 1
    on_error: OnError = "stop"
    timeout: float | None = None
    concurrency_key: str | None = None
    concurrency_limit: int = 1
    priority: int = 0


@attrs.frozen(kw_only=True)
class Node:
    """One node of a workflow: an action applied with parameters.

    ``key`` is unique in the workflow and is how expressions refer to the node
    (``nodes.<key>.output``). ``params`` may hold templates.
    """

    key: str
    type: str
    name: str = ""
    params: dict[str, Any] = attrs.field(factory=dict)
    # One instance for every node that sets none (most of them): it cannot change.
    settings: NodeSettings = attrs.field(default=NodeSettings())

    @property
    def display_name(self) -> str:
        """The name to show to people: ``name`` when set, else ``key``."""
        return self.name or self.key


@attrs.frozen(kw_only=True)
class Connection:
    """A connection from an output port of one node to an input port of another.

    In a workflow file it is written ``{from: a, from_port: main, to: b, to_port: main}``.
    """

    from_: str
    to: str
    from_port: str = DEFAULT_PORT
    to_port: str = DEFAULT_PORT

    def __str__(self) -> str:
        return f"{self.from_}.{self.from_port} -> {self.to}.{self.to_port}"


@attrs.frozen(kw_only=True)
class Workflow:
    """A workflow definition: nodes joined by connections between named ports."""

    id: str
    version: int = 1
    name: str = ""
    description: str = ""
    nodes: tuple[Node, ...] = ()
    connections: tuple[Connection, ...] = ()
    settings: WorkflowSettings = attrs.field(factory=WorkflowSettings)
    variables: dict[str, Any] = attrs.field(factory=dict)

    @property
    def display_name(self) -> str:
        """The name to show to people: ``name`` when set, else ``id``."""
        return self.name or self.id
